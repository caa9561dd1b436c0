/**
 * The request path of the router, in order — this file is the architecture:
 *
 *   guard      raw framing, target and Host checks on the Node request (before Hono,
 *              because the adapter builds a URL from them)        guard/
 *   context    request id, client address; audit + metrics when the exchange ends
 *   resolve    exact Host → tenant (memory → Redis → key service)  tenant-cache/
 *   credential API key (Authorization / X-API-Key) and session cookie  keys/ sessions/
 *   decide     one fail-closed decision from all outcomes          policy/
 *   limits     body size, concurrency, rate + monthly quota (leased from
 *              the store), tenant branding at BRANDING_PATH        limits/
 *   proxy      signed tenant context, streamed to the upstream     proxy/
 *
 * Every refusal ends the chain before `proxy`, so no refused request reaches an
 * upstream. Resolvers return outcomes; only `decide` and the edges send responses.
 */
import { type IncomingMessage, STATUS_CODES, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { getRequestListener, type HttpBindings } from "@hono/node-server";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { type Context, Hono } from "hono";
import type { Logger } from "pino";
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
import {
  BRANDING_PATH,
  brandedRefusalPage,
  brandingJson,
  HTML_HEADERS,
  isBranded,
  type Limiter,
  type LimitOutcome,
  type UsageMeter,
  wantsHtml,
} from "./limits/index.ts";
import type { RouterConfig } from "./config.ts";
import { refusalHeaders, writeRefusal } from "./errors.ts";
import { inspectRequest } from "./guard/index.ts";
import { type Extracted, extractKey, verifyKey } from "./keys/index.ts";
import type { RouterMetrics } from "./ops/index.ts";
import { type Decision, decide, type HostOutcome, type KeyOutcome, type SessionOutcome } from "./policy/index.ts";
import { forwardRequest, type H1Client, H, isBlockedRequestHeader, connectionTokens, UpstreamHealth } from "./proxy/index.ts";
import { nextTraceparent } from "./proxy/trace.ts";
import type { SecuritySignals } from "./security/index.ts";
import { nextRequestId } from "./request-id.ts";
import { verifySession, withoutSessionCookie } from "./sessions/index.ts";
import type { Resolver } from "./tenant-cache/index.ts";

export interface RouterDeps {
  config: Readonly<RouterConfig>;
  resolver: Resolver;
  dispatcher: Dispatcher;
  /** The HTTP/1.1 client for body-less requests to http: upstreams; without it, undici forwards all. */
  h1?: H1Client;
  audit: AuditSink;
  metrics: RouterMetrics;
  clientIp: ClientIp;
  /** Rate, quota and concurrency limits; without it only body size is limited. */
  limiter?: Limiter;
  /** Usage metering; without it nothing is metered. */
  meter?: UsageMeter;
  /** Cross-tenant attempts are reported here (metrics, alerts). */
  security?: SecuritySignals;
  log?: Logger;
  /** Collects the ids of accepted keys for batched last-used reports. */
  keyUsage?: { record(keyId: string): void };
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
  /** Tenant holding a concurrency slot of this router for this exchange. */
  slot: string | null;
  /** The origin this exchange was sent to first, counted in `outstanding` (tenants with several). */
  outstandingOrigin: string | null;
  bytesIn: number;
  bytesOut: number;
  rateHeaders: Record<string, string> | null;
  /** Set when the connection failed under this request (timeout, parser error). */
  closedBy: RefusalReason | null;
  /** The exchange has been accounted for (audit, metrics, metering): once only. */
  ended: boolean;
  /** AUDIT_FAIL_MODE=closed: room for this allow's audit event is held. */
  auditReserved: boolean;
}

/** A request's state before anything is known about it: nothing resolved, nothing presented. */
function newState(requestId: string, started: number, hostname: string, path: string, clientIp: string): RequestState {
  return {
    requestId,
    started,
    hostname,
    path,
    clientIp,
    host: UNRESOLVED,
    extracted: { kind: "none" },
    key: NOT_PRESENTED,
    session: NOT_PRESENTED,
    decision: null,
    status: 0,
    upstreamMs: 0,
    slot: null,
    outstandingOrigin: null,
    bytesIn: 0,
    bytesOut: 0,
    rateHeaders: null,
    closedBy: null,
    ended: false,
    auditReserved: false,
  };
}

type Env = { Bindings: HttpBindings; Variables: { state: RequestState } };

const GUARDED = Symbol("portcullis.guarded");
/** The client sent `Expect: 100-continue` and waits for 100 before its body. */
const EXPECTS_CONTINUE = Symbol("portcullis.expectsContinue");
type Guarded = IncomingMessage & { [GUARDED]?: { hostname: string; path: string }; [EXPECTS_CONTINUE]?: true };

const NOT_PRESENTED = { presented: false } as const;
/** A tenant whose context key never rotated signs with version 1. */
const FIRST_CONTEXT_KEY = { version: 1, previous: null } as const;
const UNRESOLVED: HostOutcome = { kind: "tenant", ok: false, code: "unavailable" };
const API_HOST: HostOutcome = { kind: "api", ok: true };
type Allowed = Extract<Decision, { allow: true }>;

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
  const { config, resolver, metrics, audit, limiter, meter } = deps;
  const now = deps.now ?? Date.now;
  const app = new Hono<Env>();
  const sign = contextSigner(config.contextSigningSecret);
  const auditClosed = config.audit && audit.failMode === "closed";
  let rr = 0;
  // Exchanges in flight per origin, for tenants with several (least outstanding of two).
  const outstanding = new Map<string, number>();
  // Passive health of upstream origins, shared by both forwarding clients.
  const upstreamHealth = new UpstreamHealth({
    ...config.upstreamHealth,
    // The longest a try takes before its outcome is known: one probe at a time.
    probeWindowMs: config.upstream.connectTimeoutMs + config.upstream.headersTimeoutMs,
    onEject: (reason) => metrics.upstreamEjections.inc({ reason }),
    onFailure: (reason) => metrics.upstreamFailedTries.inc({ reason }),
    onPanic: () => metrics.upstreamPanics.inc(),
  });
  metrics.upstreamEjected.source = () => upstreamHealth.ejected();
  // Connections refused and closing: nothing more is read from them as a request.
  const closing = new WeakSet<object>();
  // The request being served on each connection, so that a timeout or parser error
  // on that connection is refused and audited as that request, once.
  const inflight = new WeakMap<object, RequestState>();
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
      const tenantId = d === null ? null : d.allow ? d.tenant.id : (d.tenantId ?? null);
      metrics.decided(
        d?.allow ? "allow" : "refuse",
        d === null ? "resolution_unavailable" : d.allow ? "allowed" : d.reason,
        tenantId,
      );
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
      credential: d?.allow
        ? d.auth
        : s.extracted.kind === "key" || s.extracted.kind === "misplaced"
          ? "api-key"
          : s.session.presented
            ? "session"
            : "none",
      clientIp: s.clientIp,
      status: s.status,
    };
    if (d?.allow && d.keyId) event.keyId = d.keyId;
    if (d?.allow && d.userId) event.userId = d.userId;
    audit.record(event, s.auditReserved);
    s.auditReserved = false;
    metrics.decided(event.decision, reason, event.tenantId);
    if ((reason === "key_other_tenant" || reason === "session_other_tenant") && deps.security && event.tenantId) {
      const key = s.key.presented && s.key.ok ? s.key : null;
      const session = s.session.presented && s.session.ok ? s.session : null;
      deps.security.crossTenant({
        reason,
        tenantId: event.tenantId,
        credentialTenantId: reason === "key_other_tenant" ? (key?.tenantId ?? null) : (session?.tenantId ?? null),
        requestId: event.requestId,
        host: event.host,
        path: event.path,
        clientIp: event.clientIp,
        ...(reason === "key_other_tenant" && key ? { keyId: key.keyId } : {}),
        time: event.time,
      });
    }
  }

  /** The tenant a refusal is about, when the router knows its record (for branding). */
  function tenantOf(s: RequestState): TenantRecord | null {
    const d = s.decision;
    if (d === null) return null;
    if (d.allow) return d.tenant;
    if (s.host.ok && s.host.kind === "tenant" && s.host.tenant?.id === d.tenantId) return s.host.tenant;
    if (s.key.presented && s.key.ok && s.key.tenant?.id === d.tenantId) return s.key.tenant;
    return null;
  }

  function refuse(
    c: {
      body: (b: string, s: number, h: Record<string, string>) => Response;
      env: HttpBindings;
    },
    s: RequestState,
    reason: RefusalReason,
    extra?: Record<string, string>,
  ) {
    s.status = REFUSALS[reason].status;
    // A person in a browser gets the tenant's branded page for limits and suspension.
    if (isBranded(reason) && wantsHtml(c.env.incoming.headers.accept)) {
      const tenant = tenantOf(s);
      if (tenant !== null) {
        const headers: Record<string, string> = { ...HTML_HEADERS, "x-request-id": s.requestId, ...extra };
        return c.body(brandedRefusalPage(tenant, reason, s.requestId), s.status, headers);
      }
    }
    const headers = refusalHeaders(reason, s.requestId);
    if (extra !== undefined) Object.assign(headers, extra);
    return c.body(refusalBody(reason, s.requestId), s.status, headers);
  }

  /**
   * Refuse (the exchange ends here); close the connection when a body is still
   * unread (never wait for it).
   */
  function refuseRequest(c: Context<Env>, s: RequestState, reason: RefusalReason, extra?: Record<string, string>) {
    const incoming = c.env.incoming;
    if (!incoming.complete) {
      closing.add(incoming.socket);
      // Node writes `Connection: close` itself, in the place it does when the client
      // asked to close: a refusal decided before the request's end (a warm key, a
      // cached host) is then the same bytes as one decided after it (no cache oracle).
      c.env.outgoing.shouldKeepAlive = false;
    }
    return answer(c, s, refuse(c, s, reason, extra));
  }

  // ---- the request path ---------------------------------------------------------------
  // One Hono handler runs the stages in order. Each stage is synchronous when what it
  // needs is in memory (a warm host, key, session and rate lease) and returns a promise
  // only when it must wait: a warm request is resolved, decided and handed to the
  // upstream without a single await. `finish` ends the exchange exactly once: when
  // the router answers itself, or when the forwarded response ends.
  type Reply = Response | Promise<Response>;

  app.all("*", function route(c): Reply {
    const incoming = c.env.incoming as Guarded;
    const guarded = incoming[GUARDED] as { hostname: string; path: string };
    const s = newState(nextRequestId(), performance.now(), guarded.hostname, guarded.path, deps.clientIp(incoming));
    c.set("state", s);
    inflight.set(incoming.socket, s);
    metrics.inFlight.inc();
    try {
      const reply = resolveHost(c, s);
      return reply instanceof Promise ? reply.catch((error: unknown) => failed(c, s, error)) : reply;
    } catch (error) {
      return failed(c, s, error);
    }
  });

  /** Ends the exchange once: concurrency slot, metering, audit, metrics. */
  function finish(s: RequestState, incoming: IncomingMessage) {
    if (s.ended) return;
    s.ended = true;
    metrics.inFlight.dec();
    if (s.slot !== null) limiter?.release(s.slot);
    if (s.outstandingOrigin !== null) {
      const left = (outstanding.get(s.outstandingOrigin) ?? 1) - 1;
      if (left > 0) outstanding.set(s.outstandingOrigin, left);
      else outstanding.delete(s.outstandingOrigin);
    }
    const socket = incoming.socket;
    if (inflight.get(socket) === s) inflight.delete(socket);
    if (s.closedBy !== null) {
      const d = s.decision;
      const tenantId = d === null ? undefined : d.allow ? d.tenant.id : d.tenantId;
      s.decision = { allow: false, reason: s.closedBy, ...(tenantId ? { tenantId } : {}) };
      s.status = REFUSALS[s.closedBy].status;
    }
    const d = s.decision;
    const tenantId = d === null ? undefined : d.allow ? d.tenant.id : d.tenantId;
    try {
      if (meter && tenantId !== undefined) meter.record(tenantId, d?.allow === true, s.bytesIn, s.bytesOut);
      // Last use is reported in batches, never written per request.
      if (d?.allow && d.keyId !== undefined) deps.keyUsage?.record(d.keyId);
    } finally {
      // Whatever the metering did, the decision is audited (and its reservation used).
      recordAudit(s, incoming.method ?? "");
    }
    const total = performance.now() - s.started;
    metrics.added.observe(Math.max(0, total - s.upstreamMs) / 1000);
    if (s.upstreamMs > 0) metrics.upstream.observe(s.upstreamMs / 1000);
  }

  /** The router's own answer (refusal, branding): the exchange ends as it is sent. */
  function answer(c: Context<Env>, s: RequestState, response: Response): Response {
    finish(s, c.env.incoming);
    return response;
  }

  /** A programmer error on the path: fail closed, never forward. */
  function failed(c: Context<Env>, s: RequestState, error: unknown): Response {
    const forwarding = s.ended || c.env.outgoing.headersSent;
    s.decision = { allow: false, reason: "resolution_unavailable" };
    s.status = 503;
    if (deps.log) deps.log.error({ err: error, requestId: s.requestId }, "router error");
    else console.error(`router error ${s.requestId}:`, error);
    if (forwarding) {
      // The answer had begun: a truncated response must not look complete.
      c.env.outgoing.destroy();
      finish(s, c.env.incoming);
      return RESPONSE_ALREADY_SENT;
    }
    return answer(c, s, refuse(c, s, "resolution_unavailable"));
  }

  // ---- resolve: exact Host → tenant --------------------------------------------------
  function resolveHost(c: Context<Env>, s: RequestState): Reply {
    if (s.hostname === config.apiHostname) {
      s.host = API_HOST;
      return credentials(c, s);
    }
    const hit = resolver.peekHost(s.hostname);
    if (hit !== undefined) {
      s.host = { kind: "tenant", ok: true, tenant: hit };
      return afterHost(c, s);
    }
    return resolver.resolveHost(s.hostname).then((lookup) => {
      s.host = lookup.ok ? { kind: "tenant", ok: true, tenant: lookup.tenant } : UNRESOLVED;
      return afterHost(c, s);
    });
  }

  function afterHost(c: Context<Env>, s: RequestState): Reply {
    // An unknown host is refused before any credential is looked at.
    if (s.host.ok && s.host.kind === "tenant" && s.host.tenant === null) {
      s.decision = { allow: false, reason: "unknown_host" };
      return refuseRequest(c, s, "unknown_host");
    }
    return credentials(c, s);
  }

  // ---- credentials: API key and session ------------------------------------------------
  function credentials(c: Context<Env>, s: RequestState): Reply {
    const incoming = c.env.incoming;
    s.extracted = extractKey(incoming.rawHeaders, s.path, s.host.kind === "api");
    const t = now();
    const cookie = incoming.headers.cookie;
    const hostTenant = s.host.ok && s.host.kind === "tenant" ? (s.host.tenant?.id ?? null) : null;
    // Both lookups start before either is awaited.
    // A misplaced key is verified like any other: another tenant's is the same 401.
    const found = s.extracted.kind === "key" || s.extracted.kind === "misplaced" ? s.extracted.key : null;
    const key = found !== null ? verifyKey(resolver, found, t, hostTenant) : NOT_PRESENTED;
    const session = cookie?.includes(config.sessionCookie)
      ? verifySession(resolver, cookie, config.sessionCookie, config.sessionSecret, t)
      : NOT_PRESENTED;
    if (key instanceof Promise || session instanceof Promise) {
      return Promise.all([key, session]).then(([k, v]) => {
        s.key = k;
        s.session = v;
        return decision(c, s);
      });
    }
    s.key = key;
    s.session = session;
    return decision(c, s);
  }

  // ---- decide: the one fail-closed decision ------------------------------------------
  function decision(c: Context<Env>, s: RequestState): Reply {
    s.decision = decide({
      host: s.host,
      key: s.key,
      session: s.session,
      credentialError: s.extracted.kind === "error" ? s.extracted.code : null,
      keyMisplaced: s.extracted.kind === "misplaced",
      clientIp: s.clientIp,
    });
    if (!s.decision.allow) return refuseRequest(c, s, s.decision.reason);
    return limits(c, s, s.decision);
  }

  // ---- limits ---------------------------------------------------------------------------
  function limits(c: Context<Env>, s: RequestState, d: Allowed): Reply {
    const max = d.tenant.limits.maxBodyBytes;
    const declared = c.env.incoming.headers["content-length"];
    if (max !== null && declared !== undefined && Number(declared) > max) {
      s.decision = { allow: false, reason: "body_too_large", tenantId: d.tenant.id };
      return refuseRequest(c, s, "body_too_large");
    }
    if (limiter === undefined) return branding(c, s, d);
    const keyLimits = d.keyId !== undefined && s.key.presented && s.key.ok ? s.key.limits : undefined;
    const limit = limiter.check(d.tenant, d.keyId, keyLimits ?? null);
    return limit instanceof Promise ? limit.then((l) => limited(c, s, d, l)) : limited(c, s, d, limit);
  }

  function limited(c: Context<Env>, s: RequestState, d: Allowed, limit: LimitOutcome): Reply {
    if (!limit.ok) {
      s.decision = { allow: false, reason: limit.reason, tenantId: d.tenant.id };
      return refuseRequest(c, s, limit.reason, limit.headers);
    }
    if (d.tenant.limits.concurrency !== null) s.slot = d.tenant.id;
    s.rateHeaders = limit.headers;
    return branding(c, s, d);
  }

  // ---- branding: answered by the router on the tenant's own hostnames ------------------
  function branding(c: Context<Env>, s: RequestState, d: Allowed): Reply {
    // AUDIT_FAIL_MODE=closed: an allow that could not be audited is not an allow.
    if (auditClosed) {
      if (!audit.reserveAllow()) {
        s.decision = { allow: false, reason: "audit_unavailable", tenantId: d.tenant.id };
        return refuseRequest(c, s, "audit_unavailable");
      }
      s.auditReserved = true;
    }
    if (s.host.kind === "tenant" && pathOnly(s.path) === BRANDING_PATH) {
      const method = c.env.incoming.method;
      if (method === "GET" || method === "HEAD") {
        s.status = 200;
        return answer(
          c,
          s,
          c.body(brandingJson(d.tenant), 200, {
            "content-type": "application/json",
            "cache-control": "public, max-age=60",
            "x-request-id": s.requestId,
            ...(s.rateHeaders ?? {}),
          }),
        );
      }
    }
    return proxy(c, s, d);
  }

  // ---- proxy ------------------------------------------------------------------------------
  function proxy(c: Context<Env>, s: RequestState, d: Allowed): Response {
    const { incoming, outgoing } = c.env;
    // The connection failed or was refused while the request was being resolved
    // (parser error in the body, timeout, client gone): nothing is forwarded.
    if (s.closedBy !== null || incoming.socket.destroyed) {
      finish(s, incoming);
      return RESPONSE_ALREADY_SENT;
    }
    const tenant = d.tenant;
    const binding = tenant.binding as { server: string; database: string };

    // Client headers, minus hop-by-hop, Connection-named and spoofable ones.
    const raw = incoming.rawHeaders;
    const named = connectionTokens(incoming.headers.connection);
    const dropAuthorization = s.extracted.kind === "key" && s.extracted.fromAuthorization;
    const headers: string[] = [];
    let traceparent: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i] as string;
      if (isBlockedRequestHeader(name)) continue;
      const lower = name.toLowerCase();
      if (lower === "traceparent") {
        // A repeated traceparent is invalid (W3C Trace Context §3.2): start a new trace.
        traceparent = traceparent === undefined ? (raw[i + 1] as string) : "";
        continue;
      }
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
    headers.push(H.host, s.hostname, "traceparent", nextTraceparent(traceparent));
    for (const name in context) headers.push(name, context[name as keyof TenantContext] as string);
    // Signed with this tenant's own key, over the method, Host and target too.
    headers.push(
      H.tenantSignature,
      sign(
        tenant.id,
        tenant.contextKey ?? FIRST_CONTEXT_KEY,
        context,
        { method: incoming.method as string, host: s.hostname, target: s.path },
        now(),
      ),
    );

    const hasBody = incoming.headers["transfer-encoding"] !== undefined || (incoming.headers["content-length"] ?? "0") !== "0";
    // Only now, the request allowed, is the client told to send its body (RFC 9110
    // §10.1.1): a refused client never uploads it (see `checkContinue`).
    if (hasBody && (incoming as Guarded)[EXPECTS_CONTINUE] === true) outgoing.writeContinue();
    const origins = tenant.upstreams;
    let start = rr++;
    if (origins.length > 1) {
      // Least outstanding of two: the round-robin choice, or the next origin when it
      // has fewer exchanges in flight from this router. A black-holed or slow instance
      // keeps its requests in flight, so it stops being chosen long before a timeout
      // or an error could eject it.
      const first = origins[start % origins.length] as string;
      const second = origins[(start + 1) % origins.length] as string;
      if ((outstanding.get(second) ?? 0) < (outstanding.get(first) ?? 0)) start++;
      const chosen = origins[start % origins.length] as string;
      outstanding.set(chosen, (outstanding.get(chosen) ?? 0) + 1);
      s.outstandingOrigin = chosen;
    }
    forwardRequest(
      deps.dispatcher,
      deps.h1,
      outgoing,
      {
        origins,
        start,
        method: incoming.method as string,
        path: s.path,
        headers,
        body: hasBody ? incoming : null,
        maxBodyBytes: tenant.limits.maxBodyBytes,
        stallTimeoutMs: config.upstream.bodyTimeoutMs,
        health: upstreamHealth,
        responseHeaders:
          s.rateHeaders === null ? { "x-request-id": s.requestId } : { "x-request-id": s.requestId, ...s.rateHeaders },
      },
      (res, reason) => writeRefusal(res, reason, s.requestId),
      (result) => {
        s.status = result.status;
        s.upstreamMs = result.upstreamMs;
        s.bytesIn = result.bytesIn;
        s.bytesOut = result.bytesOut;
        // A body that outgrew the tenant's limit while streaming is a refusal, not an upstream error.
        if (result.failure === "body_too_large") s.decision = { allow: false, reason: "body_too_large", tenantId: tenant.id };
        // A client too slow to take its response is cut, not counted against the upstream.
        if (result.failure !== null && result.failure !== "request_timeout")
          metrics.upstreamErrors.inc({ reason: result.failure });
        finish(s, incoming);
      },
    );
    return RESPONSE_ALREADY_SENT;
  }

  app.onError((error, c) => {
    // Outside the request path (a failure of the framework itself): fail closed.
    const s = c.get("state");
    if (s !== undefined) return failed(c, s, error);
    const requestId = nextRequestId();
    if (deps.log) deps.log.error({ err: error, requestId }, "router error");
    else console.error(`router error ${requestId}:`, error);
    return c.body(refusalBody("resolution_unavailable", requestId), 503, refusalHeaders("resolution_unavailable", requestId));
  });

  const honoListener = getRequestListener(app.fetch, { hostname: "invalid.invalid" });

  /** Records one refusal decided at the edge, before any request state existed. */
  function auditEdge(requestId: string, reason: RefusalReason, hostname: string, path: string, method: string, ip: string) {
    const state = newState(requestId, 0, hostname, path, ip);
    state.decision = { allow: false, reason };
    state.status = REFUSALS[reason].status;
    recordAudit(state, method);
  }

  /**
   * Writes a refusal straight onto a socket Node no longer drives (parser errors,
   * upgrades, CONNECT) and closes it: after an unreadable or tunnelled request no
   * further byte on that connection can be trusted as the start of a request.
   */
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
    void honoListener(incoming, outgoing);
  }

  /**
   * `Expect: 100-continue` (Node's 'checkContinue' event): with this listener Node does
   * not answer 100 by itself the moment the head arrives, before any decision. The
   * request takes the normal path; `proxy` sends 100 once it is allowed, and a refusal
   * is the only answer, with the connection closed since the body is unread.
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
    // Already refused, audited and closing: the rest of the bytes are not a request.
    // A peer that reset the connection sent no request to decide on.
    if (code === "ECONNRESET" || code === "EPIPE") {
      socket.destroy();
      return;
    }
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

  return { app, listener, clientError, upgrade, connect, checkContinue, checkExpectation };
}
