export { createRouterApp, type RouterDeps } from "./app.ts";
export { type AuditEvent, type AuditKind, type AuditWriter, memoryWriter } from "./audit/index.ts";
export { loadRouterConfig, type RouterConfig } from "./config.ts";
export { FALLBACK_MS, HEADROOM_MS, LEASE_MS, type LimitOutcome, Limiter, PREFETCH_GAP_MS } from "./limits/index.ts";
export { decide, type Decision, type DecisionInput } from "@portcullis/shared";
export { type RunningRouter, startRouter } from "./server.ts";
export { createKeyServiceClient } from "./tenant-cache/index.ts";
