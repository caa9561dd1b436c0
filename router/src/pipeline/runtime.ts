/**
 * What every exchange of one router app shares: its dependencies, the connections
 * being closed, the exchange in flight on each connection, the upstream balance and
 * health, the context signer — and the audit record an exchange ends with.
 */
import type { Logger } from "pino";
import { contextSigner } from "@portcullis/shared";
import type { AuditEvent, AuditSink } from "../audit/index.ts";
import type { ClientIp } from "../client-ip.ts";
import type { RouterConfig } from "../config.ts";
import type { Limiter } from "../limits/index.ts";
import type { RouterMetrics } from "../ops/index.ts";
import { Balance } from "../proxy/balance.ts";
import { type H1Client, UpstreamHealth } from "../proxy/index.ts";
import type { SecuritySignals } from "../security/index.ts";
import type { UsageMeter } from "../usage/index.ts";
import type { Resolver } from "../tenant-cache/index.ts";
import type { Exchange } from "./exchange.ts";

export interface RouterDeps {
  config: Readonly<RouterConfig>;
  resolver: Resolver;
  /** The client every request is forwarded with (proxy/h1.ts). */
  upstream: H1Client;
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

export interface Runtime {
  deps: RouterDeps;
  now: () => number;
  sign: ReturnType<typeof contextSigner>;
  /** AUDIT_FAIL_MODE=closed: an allow needs room for its audit event first. */
  auditClosed: boolean;
  /** Connections refused and closing: nothing more is read from them as a request. */
  closing: WeakSet<object>;
  /**
   * The exchange being served on each connection, so that a timeout or parser error
   * on that connection is refused and audited as that request, once.
   */
  inflight: WeakMap<object, Exchange>;
  balance: Balance;
  /** Passive health of upstream origins, shared by every request. */
  health: UpstreamHealth;
  isoTime: (ms: number) => string;
}

export function createRuntime(deps: RouterDeps): Runtime {
  const { config, metrics, audit } = deps;
  const health = new UpstreamHealth({
    ...config.upstreamHealth,
    // The longest a try takes before its outcome is known: one probe at a time.
    probeWindowMs: config.upstream.connectTimeoutMs + config.upstream.headersTimeoutMs,
    onEject: (reason) => metrics.upstreamEjections.inc({ reason }),
    onFailure: (reason) => metrics.upstreamFailedTries.inc({ reason }),
    onPanic: () => metrics.upstreamPanics.inc(),
  });
  metrics.upstreamEjected.source = () => health.ejected();
  // Many requests share a millisecond: the audit time is formatted once per millisecond.
  let isoAt = Number.NaN;
  let iso = "";
  return {
    deps,
    now: deps.now ?? Date.now,
    sign: contextSigner(config.contextSigningSecret),
    auditClosed: config.audit && audit.failMode === "closed",
    closing: new WeakSet(),
    inflight: new WeakMap(),
    balance: new Balance(),
    health,
    isoTime(ms) {
      if (ms !== isoAt) {
        isoAt = ms;
        iso = new Date(ms).toISOString();
      }
      return iso;
    },
  };
}

export function pathOnly(path: string): string {
  const q = path.indexOf("?");
  return q === -1 ? path : path.slice(0, q);
}

/** The exchange's decision: counted, and with AUDIT on, one audit event (and cross-tenant signals). */
export function auditExchange(x: Exchange, method: string): void {
  const { deps, isoTime, now } = x.runtime;
  const { config, metrics, audit } = deps;
  const d = x.decision;
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
        ? x.status >= 500 && x.status !== 0
          ? "upstream_error"
          : "allowed"
        : d.reason;
  const event: AuditEvent = {
    time: isoTime(now()),
    requestId: x.requestId,
    decision: d?.allow ? "allow" : "refuse",
    reason,
    tenantId: d === null ? null : d.allow ? d.tenant.id : (d.tenantId ?? null),
    host: x.hostname,
    method,
    // Never the query string: it may hold secrets.
    path: pathOnly(x.path),
    credential: d?.allow
      ? d.auth
      : x.extracted.kind === "key" || x.extracted.kind === "misplaced"
        ? "api-key"
        : x.session.presented
          ? "session"
          : "none",
    clientIp: x.clientIp,
    status: x.status,
  };
  if (d?.allow && d.keyId) event.keyId = d.keyId;
  if (d?.allow && d.userId) event.userId = d.userId;
  audit.record(event, x.auditReserved);
  x.auditReserved = false;
  metrics.decided(event.decision, reason, event.tenantId);
  if ((reason === "key_other_tenant" || reason === "session_other_tenant") && deps.security && event.tenantId) {
    const key = x.key.presented && x.key.ok ? x.key : null;
    const session = x.session.presented && x.session.ok ? x.session : null;
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
