/**
 * Operations surface of the control plane and the key service: each has its own
 * Prometheus registry, served as `/metrics` (with `/healthz`) on its own ops
 * listener (CONTROL_PLANE_OPS_PORT, KEY_SERVICE_OPS_PORT), never on the admin or
 * key-service port. Label values are bounded sets only.
 */
import { Hono } from "hono";
import type { Logger } from "pino";
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Registry as PromRegistry, Registry } from "prom-client";
import type { BreakerState } from "@portcullis/shared";

/** A breaker's state as a number, as the router reports it: 0 closed, 1 half-open, 2 open. */
export const BREAKER_STATE_VALUE: Record<BreakerState, number> = { closed: 0, "half-open": 1, open: 2 };

function unhandledRejectionsCounter(registry: PromRegistry) {
  return new Counter({
    name: "portcullis_unhandled_rejections_total",
    help: "Promise rejections nothing handled (each is a bug; the process logs it and stays up).",
    registers: [registry],
  });
}

export function createControlPlaneMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "portcullis_control_plane_" });
  const adminRequests = new Histogram({
    name: "portcullis_admin_request_seconds",
    help: "Admin API requests by method and status class.",
    labelNames: ["method", "status"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const auditWritten = new Counter({
    name: "portcullis_audit_events_written_total",
    help: "Audit events stored in Postgres by this control plane.",
    registers: [registry],
  });
  const auditInvalid = new Counter({
    name: "portcullis_audit_events_invalid_total",
    help: "Malformed audit stream entries skipped (never written).",
    registers: [registry],
  });
  const auditWriteFailures = new Counter({
    name: "portcullis_audit_write_failures_total",
    help: "Failed attempts to store a batch of audit events (retried).",
    registers: [registry],
  });
  const auditBacklog = new Gauge({
    name: "portcullis_audit_stream_backlog",
    help: "Audit events in the durable stream not yet stored in Postgres.",
    registers: [registry],
  });
  const auditChainHead = new Gauge({
    name: "portcullis_audit_chain_head_seq",
    help: "Position (seq) of the newest stored audit event of the decisions chain; it never decreases unless rows were removed.",
    registers: [registry],
  });
  const jobLeader = new Gauge({
    name: "portcullis_control_plane_job_leader",
    help: "1 while this control plane holds the lease of a singleton job (domain re-verification, usage collection).",
    labelNames: ["job"] as const,
    registers: [registry],
  });
  const adminChanges = new Counter({
    name: "portcullis_admin_changes_total",
    help: "Configuration changes recorded in admin_changes.",
    registers: [registry],
  });
  const publishPending = new Gauge({
    name: "portcullis_publish_pending",
    help: "Ids of committed changes not yet written to the store and announced to routers (retried until they land).",
    registers: [registry],
  });
  const redisMasterChanges = new Counter({
    name: "portcullis_redis_master_changes_total",
    help: "Times this control plane found Redis on another server than before (a failover to a replica, or a restart).",
    registers: [registry],
  });
  const redisWritesAtRisk = new Counter({
    name: "portcullis_redis_writes_at_risk_total",
    help: "Writes this control plane made that a new Redis master may lack, at most, by kind (records: configuration records, written again at once).",
    labelNames: ["kind"] as const,
    registers: [registry],
  });
  const breakerState = new Gauge({
    name: "portcullis_dependency_breaker_state",
    help: "Circuit breaker of each dependency (postgres, redis): 0 closed, 1 half-open (probing), 2 open (calls fail at once).",
    labelNames: ["dependency"] as const,
    registers: [registry],
  });
  const unhandledRejections = unhandledRejectionsCounter(registry);
  return {
    registry,
    adminRequests,
    auditWritten,
    auditInvalid,
    auditWriteFailures,
    auditBacklog,
    auditChainHead,
    adminChanges,
    jobLeader,
    publishPending,
    breakerState,
    redisMasterChanges,
    redisWritesAtRisk,
    unhandledRejections,
  };
}
export type ControlPlaneMetrics = ReturnType<typeof createControlPlaneMetrics>;

/** Key-service routes as a bounded label set. */
export const KEY_SERVICE_ROUTES = [
  "resolve_host",
  "resolve_tenant",
  "verify_key",
  "keys_used",
  "session",
  "health",
  "other",
] as const;
export type KeyServiceRoute = (typeof KEY_SERVICE_ROUTES)[number];

export function createKeyServiceMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "portcullis_key_service_" });
  const requests = new Histogram({
    name: "portcullis_key_service_request_seconds",
    help: "Key service answer time by route and status.",
    labelNames: ["route", "status"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const overloaded = new Counter({
    name: "portcullis_key_service_overloaded_total",
    help: "Key service requests refused at once because too many lookups were in flight.",
    registers: [registry],
  });
  const inFlight = new Gauge({
    name: "portcullis_key_service_in_flight",
    help: "Key service database lookups in flight.",
    registers: [registry],
  });
  const unhandledRejections = unhandledRejectionsCounter(registry);
  return { registry, requests, overloaded, inFlight, unhandledRejections };
}
export type KeyServiceMetrics = ReturnType<typeof createKeyServiceMetrics>;

/** `/healthz` and `/metrics` for one registry. */
export function createMetricsApp(registry: PromRegistry, beforeScrape?: () => Promise<void> | void) {
  const app = new Hono();
  app.get("/healthz", (c) => c.json({ ok: true }));
  app.get("/metrics", async (c) => {
    await beforeScrape?.();
    return c.body(await registry.metrics(), 200, { "content-type": registry.contentType });
  });
  app.notFound((c) => c.json({ error: { code: "not_found", message: "Not found.", requestId: "" } }, 404));
  return app;
}

/**
 * The process-level net under every background job: a rejection nothing handled is
 * a bug to fix, logged as one and counted, but it does not take down a process that
 * serves everything else correctly (Node's default would exit). Returns the remover.
 */
export function reportUnhandledRejections(log: Logger, counter?: { inc(): void }): () => void {
  const onRejection = (reason: unknown) => {
    counter?.inc();
    log.error({ err: reason }, "unhandled promise rejection (a bug): logged, process kept running");
  };
  process.on("unhandledRejection", onRejection);
  return () => process.off("unhandledRejection", onRejection);
}
