/** Router metrics (Prometheus, prom-client). Label values are bounded sets only. */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export function createRouterMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "portcullis_router_" });
  const decisions = new Counter({
    name: "portcullis_decisions_total",
    help: "Routing decisions by outcome and reason.",
    labelNames: ["decision", "reason"] as const,
    registers: [registry],
  });
  const added = new Histogram({
    name: "portcullis_router_added_seconds",
    help: "Time the router adds to a request (decision and forwarding overhead).",
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
    registers: [registry],
  });
  const upstream = new Histogram({
    name: "portcullis_upstream_seconds",
    help: "Upstream response time, from dispatch to the end of the response.",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  const cacheLookups = new Counter({
    name: "portcullis_cache_lookups_total",
    help: "Cache lookups by cache and tier that answered (memory, store, origin, stale, unavailable).",
    labelNames: ["cache", "tier"] as const,
    registers: [registry],
  });
  const upstreamErrors = new Counter({
    name: "portcullis_upstream_errors_total",
    help: "Upstream failures answered by the router.",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  const auditDepth = new Gauge({
    name: "portcullis_audit_queue_depth",
    help: "Audit events waiting to be written.",
    registers: [registry],
  });
  const auditDropped = new Gauge({
    name: "portcullis_audit_dropped_total",
    help: "Audit events dropped because the queue was full.",
    registers: [registry],
  });
  const inFlight = new Gauge({ name: "portcullis_requests_in_flight", help: "Requests being handled.", registers: [registry] });
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
  return {
    registry,
    decisions,
    added,
    upstream,
    cacheLookups,
    upstreamErrors,
    auditDepth,
    auditDropped,
    inFlight,
    limiterDegraded,
    limiterStoreErrors,
    limiterLocalDecisions,
    usageFlushErrors,
    usageDropped,
    usagePending,
  };
}

export type RouterMetrics = ReturnType<typeof createRouterMetrics>;
