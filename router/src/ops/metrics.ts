/**
 * Router metrics (Prometheus, prom-client). Label values are bounded sets only:
 * tenant ids become labels for the first `tenantLabels` tenants seen by this
 * process and `other` after that, so a million tenants cannot explode the series
 * count (see tenantLabel).
 *
 * Counters and the in-flight gauge touched on every request are kept in plain numbers
 * and handed to prom-client when scraped (its `collect` hook): a labelled `inc` hashes
 * its label object each time, which is avoidable work on the request path.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { BatchedCounter, BatchedGauge, BatchedHistogram, PolledGauge } from "./batched.ts";

export { BatchedCounter, BatchedGauge, BatchedHistogram, PolledGauge };

export const OTHER_TENANT = "other";

export function createRouterMetrics(options: { tenantLabels?: number } = {}) {
  const maxTenantLabels = options.tenantLabels ?? 100;
  const registry = new Registry();
  // Includes the event-loop delay (portcullis_router_nodejs_eventloop_lag_*).
  collectDefaultMetrics({ register: registry, prefix: "portcullis_router_" });
  const decisions = new BatchedCounter({
    name: "portcullis_decisions_total",
    help: "Routing decisions by outcome and reason.",
    labelNames: ["decision", "reason"] as const,
    registry,
  });
  const tenantDecisions = new BatchedCounter({
    name: "portcullis_tenant_decisions_total",
    help: "Routing decisions by tenant (bounded: the first tenants seen get a label, the rest are `other`).",
    labelNames: ["tenant", "decision"] as const,
    registry,
  });
  const crossTenant = new Counter({
    name: "portcullis_cross_tenant_attempts_total",
    help: "Requests with a credential of another tenant, by reason, tenant (bounded) and side: target (the host's tenant) or credential (the key's or session's owner).",
    labelNames: ["reason", "tenant", "side"] as const,
    registers: [registry],
  });
  const added = new BatchedHistogram({
    name: "portcullis_router_added_seconds",
    help: "Time the router adds to a request (decision and forwarding overhead).",
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
    registry,
  });
  const upstream = new BatchedHistogram({
    name: "portcullis_upstream_seconds",
    help: "Upstream response time, from dispatch to the end of the response.",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registry,
  });
  const keyService = new Histogram({
    name: "portcullis_key_service_client_seconds",
    help: "Key service calls made by the router, by call and outcome.",
    labelNames: ["call", "outcome"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5],
    registers: [registry],
  });
  const cacheLookups = new BatchedCounter({
    name: "portcullis_cache_lookups_total",
    help: "Cache lookups by cache and tier that answered (memory, store, origin, stale, unavailable).",
    labelNames: ["cache", "tier"] as const,
    registry,
  });
  const upstreamErrors = new Counter({
    name: "portcullis_upstream_errors_total",
    help: "Upstream failures answered by the router.",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  const openConnections = new Gauge({
    name: "portcullis_open_connections",
    help: "Open connections: side=client (to the public listener) or upstream (to tenant upstreams).",
    labelNames: ["side"] as const,
    registers: [registry],
  });
  const auditDepth = new Gauge({
    name: "portcullis_audit_queue_depth",
    help: "Audit events waiting in memory to be written to the durable stream.",
    registers: [registry],
  });
  const auditDropped = new Counter({
    name: "portcullis_audit_dropped_total",
    help: "Audit events dropped because their in-memory queue or their share of the durable stream was full, by decision (allow, refuse).",
    labelNames: ["decision"] as const,
    registers: [registry],
  });
  const auditAggregated = new Counter({
    name: "portcullis_audit_refusals_aggregated_total",
    help: "Refusals written as part of an aggregate audit event (one per client address, reason and tenant) because the refusal queue was full.",
    registers: [registry],
  });
  const alerts = new Counter({
    name: "portcullis_security_alerts_total",
    help: "Security alerts by outcome: sent, suppressed (rate limited), failed.",
    labelNames: ["outcome"] as const,
    registers: [registry],
  });
  const upstreamEjections = new Counter({
    name: "portcullis_upstream_ejections_total",
    help: "Upstream origins ejected by passive health, by the failure that tipped it: connect_error, timeout, reset, protocol, status_5xx.",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  const upstreamFailedTries = new Counter({
    name: "portcullis_upstream_failed_tries_total",
    help: "Tries that counted against an upstream origin's health (retried or not), by kind: connect_error, timeout, reset, protocol, status_5xx.",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  const upstreamEjected = new PolledGauge({
    name: "portcullis_upstream_ejected_origins",
    help: "Upstream origins out of rotation now: ejected, or re-admitted and waiting for a probe to succeed.",
    registry,
  });
  const upstreamPanics = new Counter({
    name: "portcullis_upstream_panic_total",
    help: "Requests sent to an ejected origin because every origin of their tenant was ejected (one try, no retry).",
    registers: [registry],
  });
  const inFlight = new BatchedGauge({ name: "portcullis_requests_in_flight", help: "Requests being handled.", registry });
  const dependencyState = new Gauge({
    name: "portcullis_dependency_breaker_state",
    help: "Circuit breaker of each dependency (redis, key_service): 0 closed, 1 half-open (probing), 2 open (calls fail at once).",
    labelNames: ["dependency"] as const,
    registers: [registry],
  });
  const dependencyOpened = new Counter({
    name: "portcullis_dependency_breaker_opened_total",
    help: "Times a dependency's circuit breaker opened (an outage seen by this router).",
    labelNames: ["dependency"] as const,
    registers: [registry],
  });
  const redisMasterChanges = new Counter({
    name: "portcullis_redis_master_changes_total",
    help: "Times this router found Redis on another server than before (a failover to a replica, or a restart).",
    registers: [registry],
  });
  const redisWritesAtRisk = new Counter({
    name: "portcullis_redis_writes_at_risk_total",
    help: "Writes this router made that a new Redis master may lack, at most, by kind: admits (requests granted by rate buckets and quotas), counters (usage requests), stream (audit events), records.",
    labelNames: ["kind"] as const,
    registers: [registry],
  });
  const limiterDegraded = new Gauge({
    name: "portcullis_limiter_degraded",
    help: "1 while rate limits are decided in this router's memory because the shared store failed (quota not enforced).",
    registers: [registry],
  });
  const limiterStoreErrors = new Counter({
    name: "portcullis_limiter_store_errors_total",
    help: "Rate-limit checks the shared store could not answer.",
    registers: [registry],
  });
  const limiterLocalDecisions = new Counter({
    name: "portcullis_limiter_local_decisions_total",
    help: "Rate-limit decisions made in this router's memory (store unavailable).",
    registers: [registry],
  });
  const limiterStoreCalls = new Counter({
    name: "portcullis_limiter_store_calls_total",
    help: "Round trips the limiter made to the shared store, by call: admit (a lease, or one request) or refund (unused leased requests given back).",
    labelNames: ["call"] as const,
    registers: [registry],
  });
  const limiterRefunded = new Counter({
    name: "portcullis_limiter_refunded_total",
    help: "Leased requests not used before their lease expired (or was replaced), given back to the shared store.",
    registers: [registry],
  });
  const limiterRefundErrors = new Counter({
    name: "portcullis_limiter_refund_errors_total",
    help: "Refunds the shared store could not take: those requests stay consumed until their buckets refill.",
    registers: [registry],
  });
  const limiterAhead = new Counter({
    name: "portcullis_limiter_admitted_ahead_total",
    help: "Requests of sparse traffic admitted before the shared store counted them (charged to it within 50 ms; docs/limits.md, sparse traffic).",
    registers: [registry],
  });
  const limiterOverAdmitted = new Counter({
    name: "portcullis_limiter_over_admitted_total",
    help: "Requests admitted ahead whose charge the shared store refused: passed beyond the limit (at most one per tenant and router each time its buckets run dry).",
    registers: [registry],
  });
  const usageFlushErrors = new Counter({
    name: "portcullis_usage_flush_errors_total",
    help: "Usage batches that could not be written to the shared store (kept and retried).",
    registers: [registry],
  });
  const usageDropped = new Counter({
    name: "portcullis_usage_dropped_total",
    help: "Exchanges not metered because too many tenant-months were pending.",
    registers: [registry],
  });
  const usagePending = new Gauge({
    name: "portcullis_usage_pending",
    help: "Tenant-months of usage waiting to be flushed to the shared store.",
    registers: [registry],
  });

  // Bounded tenant labels: the first `maxTenantLabels` tenants keep their id.
  const labelled = new Set<string>();
  function tenantLabel(tenantId: string | null | undefined): string {
    if (!tenantId) return "none";
    if (labelled.has(tenantId)) return tenantId;
    if (labelled.size < maxTenantLabels) {
      labelled.add(tenantId);
      return tenantId;
    }
    return OTHER_TENANT;
  }

  // The running counts of each decision's label sets, kept: no label object, string or
  // hash per request. Keys are bounded sets (reasons; tenant labels).
  type Children = { allow: Map<string, { n: number }>; refuse: Map<string, { n: number }> };
  const reasonChildren: Children = { allow: new Map(), refuse: new Map() };
  const tenantChildren: Children = { allow: new Map(), refuse: new Map() };
  function decided(decision: "allow" | "refuse", reason: string, tenantId: string | null) {
    let rchild = reasonChildren[decision].get(reason);
    if (rchild === undefined) {
      rchild = decisions.child({ decision, reason });
      reasonChildren[decision].set(reason, rchild);
    }
    rchild.n++;
    const tenant = tenantLabel(tenantId);
    let tchild = tenantChildren[decision].get(tenant);
    if (tchild === undefined) {
      tchild = tenantDecisions.child({ tenant, decision });
      tenantChildren[decision].set(tenant, tchild);
    }
    tchild.n++;
  }

  return {
    registry,
    decisions,
    tenantDecisions,
    crossTenant,
    added,
    upstream,
    keyService,
    cacheLookups,
    upstreamErrors,
    upstreamEjections,
    upstreamFailedTries,
    upstreamEjected,
    upstreamPanics,
    openConnections,
    auditDepth,
    auditDropped,
    auditAggregated,
    alerts,
    inFlight,
    tenantLabel,
    decided,
    dependencyState,
    redisMasterChanges,
    redisWritesAtRisk,
    dependencyOpened,
    limiterDegraded,
    limiterStoreErrors,
    limiterLocalDecisions,
    limiterStoreCalls,
    limiterRefunded,
    limiterRefundErrors,
    limiterAhead,
    limiterOverAdmitted,
    usageFlushErrors,
    usageDropped,
    usagePending,
  };
}

export type RouterMetrics = ReturnType<typeof createRouterMetrics>;
