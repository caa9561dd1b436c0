/**
 * forward: the allowed request, with the signed tenant context (`proxy/request.ts`),
 * streamed to one of the tenant's own upstream origins (`proxy/`); the exchange ends
 * when the response does. A connection that failed or was refused while the request
 * was being decided (a parser error in the body, a timeout, a client gone) forwards
 * nothing.
 */
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { writeRefusal } from "../errors.ts";
import { upstreamHeaders } from "../proxy/request.ts";
import type { Allowed, Exchange } from "./exchange.ts";
import { EXPECTS_CONTINUE, type Guarded } from "./guard.ts";

export function forward(x: Exchange): Response {
  const { incoming, outgoing } = x;
  if (x.closedBy !== null || incoming.socket.destroyed) {
    x.finish();
    return RESPONSE_ALREADY_SENT;
  }
  const d = x.decision as Allowed;
  const { deps, balance, health, sign, now } = x.runtime;
  const { config, metrics } = deps;
  const tenant = d.tenant;
  const headers = upstreamHeaders(
    incoming,
    {
      tenant,
      auth: d.auth,
      keyId: d.keyId,
      userId: d.userId,
      requestId: x.requestId,
      clientIp: x.clientIp,
      hostname: x.hostname,
      path: x.path,
      dropAuthorization: x.extracted.kind === "key" && x.extracted.fromAuthorization,
      sessionCookie: x.session.presented ? config.sessionCookie : null,
    },
    sign,
    now(),
  );
  const hasBody = incoming.headers["transfer-encoding"] !== undefined || (incoming.headers["content-length"] ?? "0") !== "0";
  // Only now, the request allowed, is the client told to send its body (RFC 9110
  // §10.1.1): a refused client never uploads it (`edge/`, checkContinue).
  if (hasBody && (incoming as Guarded)[EXPECTS_CONTINUE] === true) outgoing.writeContinue();
  const origins = tenant.upstreams;
  const start = balance.pick(origins);
  if (origins.length > 1) x.outstandingOrigin = origins[start % origins.length] as string;
  deps.upstream.forward(
    outgoing,
    {
      origins,
      start,
      method: incoming.method as string,
      path: x.path,
      headers,
      body: hasBody ? incoming : null,
      maxBodyBytes: tenant.limits.maxBodyBytes,
      health,
      responseHeaders:
        x.rateHeaders === null ? { "x-request-id": x.requestId } : { "x-request-id": x.requestId, ...x.rateHeaders },
    },
    (res, reason) => writeRefusal(res, reason, x.requestId),
    (result) => {
      x.status = result.status;
      x.upstreamMs = result.upstreamMs;
      x.bytesIn = result.bytesIn;
      x.bytesOut = result.bytesOut;
      // A body that outgrew the tenant's limit while streaming is a refusal, not an upstream error.
      if (result.failure === "body_too_large") x.refusedWhileStreaming("body_too_large");
      // A client too slow to take its response is cut, not counted against the upstream.
      if (result.failure !== null && result.failure !== "request_timeout") metrics.upstreamErrors.inc({ reason: result.failure });
      x.finish();
    },
  );
  x.handedUpstream();
  return RESPONSE_ALREADY_SENT;
}
