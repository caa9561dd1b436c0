/**
 * Operations surface of the control plane and the key service: each has its own
 * Prometheus registry, served as `/metrics` (with `/healthz`) on its own ops
 * listener (CONTROL_PLANE_OPS_PORT, KEY_SERVICE_OPS_PORT), never on the admin or
 * key-service port. Label values are bounded sets only.
 */
import { Hono } from "hono";
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Registry as PromRegistry, Registry } from "prom-client";

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
  const adminChanges = new Counter({
    name: "portcullis_admin_changes_total",
    help: "Configuration changes recorded in admin_changes.",
    registers: [registry],
  });
  return { registry, adminRequests, auditWritten, auditInvalid, auditWriteFailures, auditBacklog, auditChainHead, adminChanges };
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
  return { registry, requests, overloaded, inFlight };
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
