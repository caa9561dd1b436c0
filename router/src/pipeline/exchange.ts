/**
 * One request's exchange: what the stages learned about it, the one decision (written
 * only here: `allow`, `refuse`, `fail`, and `finish` for a connection that failed under
 * it), and its end — `finish` runs once, whether the router answered itself or the
 * forwarded response ended: the tenant's concurrency slot, usage metering, the key's
 * last use, the audit event and the latency metrics.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { HttpBindings } from "@hono/node-server";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { REFUSALS, type RefusalReason, refusalBody, type TenantRecord } from "@portcullis/shared";
import { brandedRefusalPage, HTML_HEADERS, isBranded, wantsHtml } from "../branding/index.ts";
import { refusalHeaders } from "../errors.ts";
import type { Extracted } from "../keys/index.ts";
import type { Decision, HostOutcome, KeyOutcome, SessionOutcome } from "@portcullis/shared";
import { auditExchange, type Runtime } from "./runtime.ts";

export type Env = { Bindings: HttpBindings; Variables: { exchange: Exchange } };
export type Allowed = Extract<Decision, { allow: true }>;

export const NOT_PRESENTED = { presented: false } as const;
export const UNRESOLVED: HostOutcome = { kind: "tenant", ok: false, code: "unavailable" };

export class Exchange {
  readonly runtime: Runtime;
  /**
   * The Hono context, for the router's own answers; let go once the request is handed
   * to the upstream, so that it (its request, headers and variables) is not kept alive
   * through the upstream's round trip. Null for a refusal decided at the edge.
   */
  #c: Context<Env> | null;
  readonly incoming: IncomingMessage;
  readonly outgoing: ServerResponse;
  readonly requestId: string;
  readonly started: number;
  readonly clientIp: string;
  hostname: string;
  path: string;
  host: HostOutcome = UNRESOLVED;
  extracted: Extracted = { kind: "none" };
  key: KeyOutcome = NOT_PRESENTED;
  session: SessionOutcome = NOT_PRESENTED;
  #decision: Decision | null = null;
  status = 0;
  upstreamMs = 0;
  /** Tenant holding a concurrency slot of this router for this exchange. */
  slot: string | null = null;
  /** The origin this exchange was sent to first, counted as outstanding (tenants with several). */
  outstandingOrigin: string | null = null;
  bytesIn = 0;
  bytesOut = 0;
  rateHeaders: Record<string, string> | null = null;
  /** Set when the connection failed under this request (timeout, parser error). */
  closedBy: RefusalReason | null = null;
  /** AUDIT_FAIL_MODE=closed: room for this allow's audit event is held. */
  auditReserved = false;
  #ended = false;

  constructor(runtime: Runtime, c: Context<Env> | null, requestId: string, started: number, clientIp: string) {
    this.runtime = runtime;
    this.#c = c;
    // An edge refusal has neither: it is audited, never answered through the exchange.
    this.incoming = c?.env.incoming as IncomingMessage;
    this.outgoing = c?.env.outgoing as ServerResponse;
    this.requestId = requestId;
    this.started = started;
    this.clientIp = clientIp;
    this.hostname = "";
    this.path = "";
  }

  get decision(): Decision | null {
    return this.#decision;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** The Hono context, while the router may still answer itself. */
  get c(): Context<Env> {
    return this.#c as Context<Env>;
  }

  /** The request goes upstream: the router will not answer it itself any more. */
  handedUpstream(): void {
    this.#c = null;
  }

  /** The tenant the decision is about, allowed or refused (undefined: none known). */
  get tenantId(): string | undefined {
    const d = this.#decision;
    return d === null ? undefined : d.allow ? d.tenant.id : d.tenantId;
  }

  /** The policy's decision: allowed, the stages go on; refused, the answer that ends the exchange. */
  decide(d: Decision): Response | undefined {
    this.#decision = d;
    return d.allow ? undefined : this.refuse(d.reason);
  }

  /**
   * Refuse (the exchange ends here), about the tenant decided so far; the connection
   * closes when a body is still unread (never wait for it).
   */
  refuse(reason: RefusalReason, extra?: Record<string, string>): Response {
    if (this.#decision === null || this.#decision.allow || this.#decision.reason !== reason) {
      const tenantId = this.tenantId;
      this.#decision = { allow: false, reason, ...(tenantId !== undefined ? { tenantId } : {}) };
    }
    if (!this.incoming.complete) {
      this.runtime.closing.add(this.incoming.socket);
      // Node writes `Connection: close` itself, in the place it does when the client
      // asked to close: a refusal decided before the request's end (a warm key, a
      // cached host) is then the same bytes as one decided after it (no cache oracle).
      this.outgoing.shouldKeepAlive = false;
    }
    return this.answer(this.#refusal(reason, extra));
  }

  /** The router's own answer (refusal, branding): the exchange ends as it is sent. */
  answer(response: Response): Response {
    this.finish();
    return response;
  }

  /** A programmer error on the path: fail closed, never forward. */
  fail(error: unknown): Response {
    const forwarding = this.#ended || this.#c === null || this.outgoing.headersSent;
    this.#decision = { allow: false, reason: "resolution_unavailable" };
    this.status = 503;
    const log = this.runtime.deps.log;
    if (log) log.error({ err: error, requestId: this.requestId }, "router error");
    else console.error(`router error ${this.requestId}:`, error);
    if (forwarding) {
      // The answer had begun: a truncated response must not look complete.
      this.outgoing.destroy();
      this.finish();
      return RESPONSE_ALREADY_SENT;
    }
    return this.answer(this.#refusal("resolution_unavailable"));
  }

  /** A refusal decided at the edge, before Hono: audited as is. */
  refusedAtEdge(reason: RefusalReason, method: string): void {
    this.#decision = { allow: false, reason };
    this.status = REFUSALS[reason].status;
    auditExchange(this, method);
  }

  /** Ends the exchange once: concurrency slot, metering, audit, metrics. */
  finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    const { deps, inflight, balance } = this.runtime;
    const { metrics, limiter, meter } = deps;
    metrics.inFlight.dec();
    if (this.slot !== null) limiter?.release(this.slot);
    if (this.outstandingOrigin !== null) balance.done(this.outstandingOrigin);
    const incoming = this.incoming;
    if (inflight.get(incoming.socket) === this) inflight.delete(incoming.socket);
    if (this.closedBy !== null) {
      const tenantId = this.tenantId;
      this.#decision = { allow: false, reason: this.closedBy, ...(tenantId ? { tenantId } : {}) };
      this.status = REFUSALS[this.closedBy].status;
    }
    const d = this.#decision;
    const tenantId = this.tenantId;
    try {
      if (meter && tenantId !== undefined) meter.record(tenantId, d?.allow === true, this.bytesIn, this.bytesOut);
      // Last use is reported in batches, never written per request.
      if (d?.allow && d.keyId !== undefined) deps.keyUsage?.record(d.keyId);
    } finally {
      // Whatever the metering did, the decision is audited (and its reservation used).
      auditExchange(this, incoming.method ?? "");
    }
    const total = performance.now() - this.started;
    metrics.added.observe(Math.max(0, total - this.upstreamMs) / 1000);
    if (this.upstreamMs > 0) metrics.upstream.observe(this.upstreamMs / 1000);
  }

  /** A response is being forwarded: the decision may still turn (a body that outgrew its limit). */
  refusedWhileStreaming(reason: RefusalReason): void {
    const tenantId = this.tenantId;
    this.#decision = { allow: false, reason, ...(tenantId !== undefined ? { tenantId } : {}) };
  }

  /** The tenant a refusal is about, when the router knows its record (for branding). */
  #tenantRecord(): TenantRecord | null {
    const d = this.#decision;
    if (d === null) return null;
    if (d.allow) return d.tenant;
    if (this.host.ok && this.host.kind === "tenant" && this.host.tenant?.id === d.tenantId) return this.host.tenant;
    if (this.key.presented && this.key.ok && this.key.tenant?.id === d.tenantId) return this.key.tenant;
    return null;
  }

  #refusal(reason: RefusalReason, extra?: Record<string, string>): Response {
    const c = this.c;
    this.status = REFUSALS[reason].status;
    const status = this.status as ContentfulStatusCode;
    // A person in a browser gets the tenant's branded page for limits and suspension.
    if (isBranded(reason) && wantsHtml(c.env.incoming.headers.accept)) {
      const tenant = this.#tenantRecord();
      if (tenant !== null) {
        const headers: Record<string, string> = { ...HTML_HEADERS, "x-request-id": this.requestId, ...extra };
        return c.body(brandedRefusalPage(tenant, reason, this.requestId), status, headers);
      }
    }
    const headers = refusalHeaders(reason, this.requestId);
    if (extra !== undefined) Object.assign(headers, extra);
    return c.body(refusalBody(reason, this.requestId), status, headers);
  }
}
