/**
 * The ops listener: `/healthz` (the process is alive), `/readyz` (it can resolve
 * tenants and is not draining), `/metrics`. Never served on the public port.
 */
import { Hono } from "hono";
import type { RouterMetrics } from "./metrics.ts";

export { createRouterMetrics, type RouterMetrics } from "./metrics.ts";

export interface Readiness {
  ready(): boolean;
}

export function createOpsApp(deps: { readiness: Readiness; metrics: RouterMetrics; beforeScrape?: () => void | Promise<void> }) {
  const app = new Hono();
  app.get("/healthz", (c) => c.json({ ok: true }));
  app.get("/readyz", (c) => (deps.readiness.ready() ? c.json({ ready: true }) : c.json({ ready: false }, 503)));
  app.get("/metrics", async (c) => {
    await deps.beforeScrape?.();
    return c.body(await deps.metrics.registry.metrics(), 200, { "content-type": deps.metrics.registry.contentType });
  });
  app.notFound((c) => c.json({ error: { code: "not_found", message: "Not found.", requestId: "" } }, 404));
  return app;
}
