/**
 * The edge: what is decided on the Node request or the raw socket, before Hono.
 * The raw-framing guard (`guard/`) runs on every request; what it refuses, what Node's
 * parser could not read or what ran out of time, protocol upgrades, CONNECT and
 * unmet expectations are refused here, audited, and their connection closed — after
 * an unreadable, ambiguous or tunnelled request no further byte on that connection
 * can be trusted as the start of a request. Everything else goes on to Hono and the
 * request path (`pipeline/`).
 */
import { type IncomingMessage, STATUS_CODES, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { REFUSALS, type RefusalReason, refusalBody } from "@portcullis/shared";
import { refusalHeaders, writeRefusal } from "../errors.ts";
import { inspectRequest } from "../guard/index.ts";
import { EXPECTS_CONTINUE, Exchange, GUARDED, type Guarded, type Runtime } from "../pipeline/index.ts";
import { nextRequestId } from "../request-id.ts";

type Listener = (incoming: IncomingMessage, outgoing: ServerResponse) => void;

export function createEdge(runtime: Runtime, app: Listener) {
  const { deps, closing, inflight } = runtime;
  const { config } = deps;

  /** Records one refusal decided at the edge, before any exchange existed. */
  function auditEdge(requestId: string, reason: RefusalReason, hostname: string, path: string, method: string, ip: string) {
    const x = new Exchange(runtime, null, requestId, 0, ip);
    x.hostname = hostname;
    x.path = path;
    x.refusedAtEdge(reason, method);
  }

  /** Writes a refusal straight onto a socket Node no longer drives, and closes it. */
  function refuseOnSocket(socket: Duplex, reason: RefusalReason, requestId: string) {
    closing.add(socket);
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const body = refusalBody(reason, requestId);
    const status = REFUSALS[reason].status;
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n`;
    const headers = refusalHeaders(reason, requestId);
    for (const name in headers) head += `${name}: ${headers[name]}\r\n`;
    // Flushed, then closed whatever the peer does (no half-open linger).
    socket.end(`${head}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`, () => socket.destroy());
  }

  /** The Node request listener: the guard, then the Hono app. */
  function listener(incoming: IncomingMessage, outgoing: ServerResponse) {
    // A request pipelined behind a refusal that closes the connection is not read:
    // it is not a request of its own but the bytes an ambiguity left behind.
    if (closing.has(incoming.socket)) return;
    const verdict = inspectRequest(incoming, { maxHeaderCount: config.maxHeaderCount });
    if (!verdict.ok) {
      const requestId = nextRequestId();
      // Every edge refusal closes the connection: whatever follows (an unread body,
      // a smuggled request) is never parsed as a request (RFC 9112 §9.6, §11.2).
      closing.add(incoming.socket);
      writeRefusal(outgoing, verdict.reason, requestId, true);
      auditEdge(
        requestId,
        verdict.reason,
        verdict.host ?? "",
        incoming.url ?? "",
        incoming.method ?? "",
        deps.clientIp(incoming),
      );
      return;
    }
    (incoming as Guarded)[GUARDED] = verdict;
    // The adapter parses the target again and answers a bare 400 (no decision, no
    // audit) to absolute forms the guard accepted (e.g. `HTTP://`, RFC 9110 §4.2.3):
    // it gets the origin form the guard checked, whose host is the Host header's.
    incoming.url = verdict.path;
    app(incoming, outgoing);
  }

  /**
   * `Expect: 100-continue` (Node's 'checkContinue' event): with this listener Node does
   * not answer 100 by itself the moment the head arrives, before any decision. The
   * request takes the normal path; `forward` sends 100 once it is allowed, and a
   * refusal is the only answer, with the connection closed since the body is unread.
   */
  function checkContinue(incoming: IncomingMessage, outgoing: ServerResponse) {
    // Node matches `100-continue` anywhere in the value, among other expectations;
    // only the exact one is an expectation the router can meet (RFC 9110 §10.1.1).
    if (incoming.headers.expect?.trim().toLowerCase() !== "100-continue") return checkExpectation(incoming, outgoing);
    (incoming as Guarded)[EXPECTS_CONTINUE] = true;
    listener(incoming, outgoing);
  }

  /**
   * An expectation the router cannot meet (RFC 9110 §10.1.1: 417). Node would answer a
   * bare 417 itself, with no request id and no audit event; refused here like any edge
   * refusal, and closed: the body the client may send next is not a request.
   */
  function checkExpectation(incoming: IncomingMessage, outgoing: ServerResponse) {
    if (closing.has(incoming.socket)) return;
    const verdict = inspectRequest(incoming, { maxHeaderCount: config.maxHeaderCount });
    const reason: RefusalReason = verdict.ok ? "expectation_failed" : verdict.reason;
    const requestId = nextRequestId();
    closing.add(incoming.socket);
    writeRefusal(outgoing, reason, requestId, true);
    const host = verdict.ok ? verdict.hostname : (verdict.host ?? "");
    auditEdge(requestId, reason, host, incoming.url ?? "", incoming.method ?? "", deps.clientIp(incoming));
  }

  /** Protocol upgrades (WebSocket, h2c) are not proxied: refuse, audit and close. */
  function upgrade(incoming: IncomingMessage, socket: Duplex) {
    const verdict = inspectRequest(incoming, { maxHeaderCount: config.maxHeaderCount });
    const reason: RefusalReason = verdict.ok ? "upgrade_not_supported" : verdict.reason;
    const requestId = nextRequestId();
    refuseOnSocket(socket, reason, requestId);
    const host = verdict.ok ? verdict.hostname : (verdict.host ?? "");
    auditEdge(requestId, reason, host, incoming.url ?? "", incoming.method ?? "", deps.clientIp(incoming));
  }

  /** CONNECT would make the edge an open tunnel (RFC 9110 §9.3.6): refused. */
  function connect(incoming: IncomingMessage, socket: Duplex) {
    const requestId = nextRequestId();
    refuseOnSocket(socket, "method_not_allowed", requestId);
    auditEdge(requestId, "method_not_allowed", "", incoming.url ?? "", incoming.method ?? "", deps.clientIp(incoming));
  }

  /**
   * Refuse what Node's parser could not read or what ran out of time (it never
   * reaches `listener`). A request already being served on the socket owns the
   * failure: it is refused and audited once, as that request.
   */
  function clientError(error: Error & { code?: string }, socket: Duplex) {
    const code = error.code ?? "";
    // A peer that reset the connection sent no request to decide on.
    if (code === "ECONNRESET" || code === "EPIPE") {
      socket.destroy();
      return;
    }
    // Already refused, audited and closing: the rest of the bytes are not a request.
    if (closing.has(socket)) {
      // Let the refusal already written flush, then close.
      if (socket.writable) socket.end(() => socket.destroy());
      else socket.destroy();
      return;
    }
    const reason: RefusalReason =
      code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? "request_timeout"
        : code === "HPE_HEADER_OVERFLOW"
          ? "headers_too_large"
          : "malformed_request";
    const active = inflight.get(socket);
    if (active !== undefined) {
      active.closedBy = reason;
      const res = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
      if (res?.headersSent) {
        // The answer has begun: a truncated response must not look complete.
        closing.add(socket);
        socket.destroy();
      } else refuseOnSocket(socket, reason, active.requestId);
      return;
    }
    const requestId = nextRequestId();
    refuseOnSocket(socket, reason, requestId);
    auditEdge(requestId, reason, "", "", "", (socket as Duplex & { remoteAddress?: string }).remoteAddress ?? "");
  }

  return { listener, clientError, upgrade, connect, checkContinue, checkExpectation };
}
