/**
 * The request path of the router, in order — this file is the architecture:
 *
 *   guard      raw framing, target and Host checks on the Node request (before Hono,
 *              because the adapter builds a URL from them)        guard/
 *   context    request id, client address; audit + metrics when the exchange ends
 *   resolve    exact Host → tenant (memory → Redis → key service)  tenant-cache/
 *   credential API key (Authorization / X-API-Key) and session cookie  keys/ sessions/
 *   decide     one fail-closed decision from all outcomes          policy/
 *   limits     declared body size                                  limits/
 *   proxy      signed tenant context, streamed to the upstream     proxy/
 *
 * Every refusal ends the chain before `proxy`, so no refused request reaches an
 * upstream. Resolvers return outcomes; only `decide` and the edges send responses.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { getRequestListener, type HttpBindings } from "@hono/node-server";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { Hono } from "hono";
import type { Dispatcher } from "undici";
import {
  contextSigner,
  REFUSALS,
  type RefusalReason,
  refusalBody,
  type TenantContext,
  type TenantRecord,
} from "@portcullis/shared";
import type { AuditEvent, AuditSink } from "./audit/index.ts";
import type { ClientIp } from "./client-ip.ts";
import type { RouterConfig } from "./config.ts";
import { refusalHeaders, writeRefusal } from "./errors.ts";
import { inspectRequest } from "./guard/index.ts";
import { type Extracted, extractKey, verifyKey } from "./keys/index.ts";
import type { RouterMetrics } from "./ops/index.ts";
import { type Decision, decide, type HostOutcome, type KeyOutcome, type SessionOutcome } from "./policy/index.ts";
import { forward, H, isBlockedRequestHeader, connectionTokens } from "./proxy/index.ts";
import { nextRequestId } from "./request-id.ts";
import { verifySession, withoutSessionCookie } from "./sessions/index.ts";
import type { Resolver } from "./tenant-cache/index.ts";

export interface RouterDeps {
  config: Readonly<RouterConfig>;
  resolver: Resolver;
  dispatcher: Dispatcher;
  audit: AuditSink;
  metrics: RouterMetrics;
  clientIp: ClientIp;
  now?: () => number;
}

interface RequestState {
  requestId: string;
  started: number;
  hostname: string;
  path: string;
  clientIp: string;
  host: HostOutcome;
  extracted: Extracted;
  key: KeyOutcome;
  session: SessionOutcome;
  decision: Decision | null;
  status: number;
  upstreamMs: number;
}

type Env = { Bindings: HttpBindings; Variables: { state: RequestState } };

const GUARDED = Symbol("portcullis.guarded");
type Guarded = IncomingMessage & { [GUARDED]?: { hostname: string; path: string } };

const NOT_PRESENTED = { presented: false } as const;
const UNRESOLVED: HostOutcome = { kind: "tenant", ok: false, code: "unavailable" };

/** Features enabled for a tenant, as the signed `x-tenant-features` value. */
const featureHeader = new WeakMap<TenantRecord, string>();
function featuresOf(tenant: TenantRecord): string {
  let value = featureHeader.get(tenant);
  if (value === undefined) {
    value = Object.keys(tenant.features)
      .filter((k) => tenant.features[k] === true)
      .sort()
      .join(",");
    featureHeader.set(tenant, value);
  }
  return value;
}

export function createRouterApp(deps: RouterDeps) {
  const { config, resolver, metrics, audit } = deps;
  const now = deps.now ?? Date.now;
  const app = new Hono<Env>();
  const sign = contextSigner(config.contextSigningSecret);
  let rr = 0;
  // Many requests share a millisecond: format the audit time once per millisecond.
  let isoAt = Number.NaN;
  let iso = "";
  function isoTime(ms: number): string {
    if (ms !== isoAt) {
      isoAt = ms;
      iso = new Date(ms).toISOString();
    }
    return iso;
  }

  function pathOnly(path: string): string {
    const q = path.indexOf("?");
    return q === -1 ? path : path.slice(0, q);
  }

  function recordAudit(s: RequestState, method: string) {
    const d = s.decision;
    if (!config.audit) {
      metrics.decisions.inc({
        decision: d?.allow ? "allow" : "refuse",
        reason: d === null ? "resolution_unavailable" : d.allow ? "allowed" : d.reason,
      });
      return;
    }
    const reason =
      d === null
        ? "resolution_unavailable"
        : d.allow
          ? s.status >= 500 && s.status !== 0
            ? "upstream_error"
            : "allowed"
          : d.reason;
    const event: AuditEvent = {
      time: isoTime(now()),
      requestId: s.requestId,
      decision: d?.allow ? "allow" : "refuse",
      reason,
      tenantId: d === null ? null : d.allow ? d.tenant.id : (d.tenantId ?? null),
      host: s.hostname,
      method,
      // Never the query string: it may hold secrets.
      path: pathOnly(s.path),
      credential: d?.allow ? d.auth : s.extracted.kind === "key" ? "api-key" : s.session.presented ? "session" : "none",
      clientIp: s.clientIp,
      status: s.status,
    };
    if (d?.allow && d.keyId) event.keyId = d.keyId;
    if (d?.allow && d.userId) event.userId = d.userId;
    audit.record(event);
    metrics.decisions.inc({ decision: event.decision, reason: event.reason });
  }

  function refuse(
    c: { body: (b: string, s: number, h: Record<string, string>) => Response },
    s: RequestState,
    reason: RefusalReason,
  ) {
    s.status = REFUSALS[reason].status;
    return c.body(refusalBody(reason, s.requestId), s.status, refusalHeaders(reason, s.requestId));
  }

  // ---- context ---------------------------------------------------------------------
  app.use(async function context(c, next) {
    const incoming = c.env.incoming as Guarded;
    const guarded = incoming[GUARDED] as { hostname: string; path: string };
    const state: RequestState = {
      requestId: nextRequestId(),
      started: performance.now(),
      hostname: guarded.hostname,
      path: guarded.path,
      clientIp: deps.clientIp(incoming),
      host: UNRESOLVED,
      extracted: { kind: "none" },
      key: NOT_PRESENTED,
      session: NOT_PRESENTED,
      decision: null,
      status: 0,
      upstreamMs: 0,
    };
    c.set("state", state);
    metrics.inFlight.inc();
    try {
      await next();
    } finally {
      metrics.inFlight.dec();
      recordAudit(state, incoming.method ?? "");
      const total = performance.now() - state.started;
      metrics.added.observe(Math.max(0, total - state.upstreamMs) / 1000);
      if (state.upstreamMs > 0) metrics.upstream.observe(state.upstreamMs / 1000);
    }
  });

  // ---- resolve: exact Host → tenant --------------------------------------------------
  app.use(async function resolveHost(c, next) {
    const s = c.get("state");
    if (s.hostname === config.apiHostname) {
      s.host = { kind: "api", ok: true };
    } else {
      const hit = resolver.peekHost(s.hostname);
      if (hit !== undefined) s.host = { kind: "tenant", ok: true, tenant: hit };
      else {
        const lookup = await resolver.resolveHost(s.hostname);
        s.host = lookup.ok
          ? { kind: "tenant", ok: true, tenant: lookup.tenant }
          : { kind: "tenant", ok: false, code: "unavailable" };
      }
    }
    // An unknown host is refused before any credential is looked at.
    if (s.host.ok && s.host.kind === "tenant" && s.host.tenant === null) {
      s.decision = { allow: false, reason: "unknown_host" };
      return refuse(c, s, "unknown_host");
    }
    await next();
  });

  // ---- credentials: API key and session ------------------------------------------------
  app.use(async function credentials(c, next) {
    const s = c.get("state");
    const incoming = c.env.incoming;
    s.extracted = extractKey(incoming.rawHeaders, s.path, s.host.kind === "api");
    const t = now();
    const cookie = incoming.headers.cookie;
    const keyWork = s.extracted.kind === "key" ? verifyKey(resolver, s.extracted.key, t) : null;
    const sessionWork = cookie?.includes(config.sessionCookie)
      ? verifySession(resolver, cookie, config.sessionCookie, config.sessionSecret, t)
      : null;
    if (keyWork) s.key = await keyWork;
    if (sessionWork) s.session = await sessionWork;
    await next();
  });

  // ---- decide: the one fail-closed decision ------------------------------------------
  app.use(async function decision(c, next) {
    const s = c.get("state");
    s.decision = decide({
      host: s.host,
      key: s.key,
      session: s.session,
      credentialError: s.extracted.kind === "error" ? s.extracted.code : null,
      clientIp: s.clientIp,
    });
    if (!s.decision.allow) return refuse(c, s, s.decision.reason);
    await next();
  });

  // ---- limits ---------------------------------------------------------------------------
  app.use(async function limits(c, next) {
    const s = c.get("state");
    const d = s.decision as Extract<Decision, { allow: true }>;
    const max = d.tenant.limits.maxBodyBytes;
    const declared = c.env.incoming.headers["content-length"];
    if (max !== null && declared !== undefined && Number(declared) > max) {
      s.decision = { allow: false, reason: "body_too_large", tenantId: d.tenant.id };
      c.header("connection", "close");
      return refuse(c, s, "body_too_large");
    }
    await next();
  });

  // ---- proxy ------------------------------------------------------------------------------
  app.all("*", async function proxy(c) {
    const s = c.get("state");
    const d = s.decision as Extract<Decision, { allow: true }>;
    const { incoming, outgoing } = c.env;
    const tenant = d.tenant;
    const binding = tenant.binding as { server: string; database: string };

    // Client headers, minus hop-by-hop, Connection-named and spoofable ones.
    const raw = incoming.rawHeaders;
    const named = connectionTokens(incoming.headers.connection);
    const dropAuthorization = s.extracted.kind === "key" && s.extracted.fromAuthorization;
    const headers: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i] as string;
      if (isBlockedRequestHeader(name)) continue;
      const lower = name.toLowerCase();
      if (named.length > 0 && named.includes(lower)) continue;
      if (lower === H.authorization && dropAuthorization) continue;
      if (lower === H.cookie && s.session.presented) {
        const rest = withoutSessionCookie(raw[i + 1] as string, config.sessionCookie);
        if (rest !== "") headers.push(name, rest);
        continue;
      }
      headers.push(name, raw[i + 1] as string);
    }

    const context: TenantContext = {
      "x-tenant-id": tenant.id,
      "x-tenant-slug": tenant.slug,
      "x-tenant-db": `${binding.server}/${binding.database}`,
      "x-tenant-auth": d.auth === "hostname" ? "hostname" : d.auth,
      "x-tenant-features": featuresOf(tenant),
      "x-request-id": s.requestId,
      "x-forwarded-for": s.clientIp,
      "x-forwarded-host": s.hostname,
      "x-forwarded-proto": "http",
    };
    if (d.keyId) context["x-tenant-key-id"] = d.keyId;
    if (d.userId) context["x-user-id"] = d.userId;
    headers.push(H.host, s.hostname);
    for (const name in context) headers.push(name, context[name as keyof TenantContext] as string);
    headers.push(H.tenantSignature, sign(context, now()));

    const hasBody = incoming.headers["transfer-encoding"] !== undefined || (incoming.headers["content-length"] ?? "0") !== "0";
    const result = await forward(
      deps.dispatcher,
      outgoing,
      {
        origins: tenant.upstreams,
        start: rr++,
        method: incoming.method as string,
        path: s.path,
        headers,
        body: hasBody ? incoming : null,
        maxBodyBytes: tenant.limits.maxBodyBytes,
        responseHeaders: { "x-request-id": s.requestId },
      },
      (res, reason) => writeRefusal(res, reason, s.requestId),
    );
    s.status = result.status;
    s.upstreamMs = result.upstreamMs;
    if (result.failure !== null) metrics.upstreamErrors.inc({ reason: result.failure });
    return RESPONSE_ALREADY_SENT;
  });

  app.onError((error, c) => {
    // A programmer error: fail closed, never forward.
    const s = c.get("state");
    const requestId = s?.requestId ?? nextRequestId();
    if (s) {
      s.decision = { allow: false, reason: "resolution_unavailable" };
      s.status = 503;
    }
    console.error(`router error ${requestId}:`, error);
    return c.body(refusalBody("resolution_unavailable", requestId), 503, refusalHeaders("resolution_unavailable", requestId));
  });

  const honoListener = getRequestListener(app.fetch, { hostname: "invalid.invalid" });

  /** The Node request listener: the guard, then the Hono app. */
  function listener(incoming: IncomingMessage, outgoing: ServerResponse) {
    const verdict = inspectRequest(incoming, { maxHeaderCount: config.maxHeaderCount });
    if (!verdict.ok) {
      const requestId = nextRequestId();
      const malformed = REFUSALS[verdict.reason].status === 400;
      writeRefusal(outgoing, verdict.reason, requestId, malformed);
      recordAudit(
        {
          requestId,
          started: 0,
          hostname: verdict.host ?? "",
          path: incoming.url ?? "",
          clientIp: deps.clientIp(incoming),
          host: UNRESOLVED,
          extracted: { kind: "none" },
          key: NOT_PRESENTED,
          session: NOT_PRESENTED,
          decision: { allow: false, reason: verdict.reason },
          status: REFUSALS[verdict.reason].status,
          upstreamMs: 0,
        },
        incoming.method ?? "",
      );
      return;
    }
    (incoming as Guarded)[GUARDED] = verdict;
    void honoListener(incoming, outgoing);
  }

  /** Refuse what Node's parser could not read (it never reaches `listener`). */
  function clientError(error: Error & { code?: string }, socket: import("node:stream").Duplex) {
    const reason: RefusalReason = error.code === "HPE_HEADER_OVERFLOW" ? "headers_too_large" : "malformed_request";
    const requestId = nextRequestId();
    if (socket.writable) {
      const body = refusalBody(reason, requestId);
      const status = REFUSALS[reason].status;
      socket.end(
        `HTTP/1.1 ${status} ${status === 431 ? "Request Header Fields Too Large" : "Bad Request"}\r\n` +
          `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n` +
          `x-request-id: ${requestId}\r\n\r\n${body}`,
      );
    } else socket.destroy();
    const peer = (socket as unknown as { remoteAddress?: string }).remoteAddress ?? "";
    recordAudit(
      {
        requestId,
        started: 0,
        hostname: "",
        path: "",
        clientIp: peer,
        host: UNRESOLVED,
        extracted: { kind: "none" },
        key: NOT_PRESENTED,
        session: NOT_PRESENTED,
        decision: { allow: false, reason },
        status: REFUSALS[reason].status,
        upstreamMs: 0,
      },
      "",
    );
  }

  return { app, listener, clientError };
}
