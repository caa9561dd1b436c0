/**
 * The key service: the router's only source of truth on a cache miss. It answers
 * host resolutions, tenant records, API key verifications and session states from
 * the control plane's database. It is reached only by routers (KEY_SERVICE_TOKEN),
 * never sees an API key (routers send its SHA-256), and bounds its own work so a
 * flood of invented keys costs one indexed lookup each, then a fast 503. When
 * Postgres is down it says so quickly (503, at once while the "postgres" breaker is
 * open, never later than its deadline), so a router falls back to what it has cached
 * instead of waiting on it.
 */
import { Hono } from "hono";
import { type CircuitBreaker, constantTimeEqual, normalizeHostname, type KeyEntry, VerifyKeyRequest } from "@portcullis/shared";
import type { Logger } from "pino";
import { sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { databaseUnavailable } from "../db/errors.ts";
import { type DatabaseRefusal, guardDatabase } from "../db/guard.ts";
import { hostEntry, keyEntry, sessionEntry, tenantEntry } from "../records/index.ts";
import type { KeyServiceMetrics, KeyServiceRoute } from "../ops/index.ts";
import type { TenantService } from "../tenants/service.ts";

function routeOf(path: string): KeyServiceRoute {
  if (path.startsWith("/v1/resolve/host/")) return "resolve_host";
  if (path.startsWith("/v1/resolve/tenant/")) return "resolve_tenant";
  if (path === "/v1/keys/verify") return "verify_key";
  if (path === "/v1/keys/used") return "keys_used";
  if (path.startsWith("/v1/sessions/")) return "session";
  if (path === "/healthz") return "health";
  return "other";
}

export interface KeyServiceDeps {
  db: Db;
  token: string;
  log: Logger;
  tenants: TenantService;
  /** Most database lookups in flight at once; beyond it, answer 503 at once. */
  maxInFlight?: number;
  metrics?: KeyServiceMetrics;
  /** How often collected last-used times are written (default one minute). */
  usageFlushMs?: number;
  /** Postgres' breaker and the per-request deadline (db/guard.ts). */
  database?: { breaker: CircuitBreaker; deadlineMs: number };
}

/** Most key ids kept for a last-used write that failed (retried with the next flush). */
const MAX_USED = 100_000;

const MESSAGES: Record<DatabaseRefusal, string> = {
  database_unavailable: "database unavailable",
  deadline_exceeded: "no answer in time",
};

export function createKeyServiceApp(deps: KeyServiceDeps) {
  const app = new Hono();
  const maxInFlight = deps.maxInFlight ?? 64;
  let inFlight = 0;
  const used = new Set<string>();

  // Last use of keys: routers report the keys they accepted (a verification alone is
  // not a use: the router may still refuse the request), written in
  // one statement per interval (a minute by default) instead of one write per request.
  const flushUsed = async () => {
    if (used.size === 0) return;
    const ids = [...used];
    used.clear();
    try {
      await deps.tenants.touchKeys(ids, new Date());
    } catch (error) {
      // Kept for the next flush (Postgres is likely down); bounded, as last use is a hint.
      for (const id of ids) if (used.size < MAX_USED) used.add(id);
      deps.log.warn({ err: error, keys: ids.length }, "recording key last use failed; retried with the next flush");
    }
  };
  const timer = setInterval(() => void flushUsed(), deps.usageFlushMs ?? 60_000);
  timer.unref();

  const metrics = deps.metrics;
  if (metrics) {
    app.use(async function measure(c, next) {
      const started = performance.now();
      await next();
      metrics.requests.observe(
        { route: routeOf(c.req.path), status: String(c.res.status) },
        (performance.now() - started) / 1000,
      );
    });
  }

  // Routers probe this while their breaker is open: it answers at once while Postgres
  // is known down, and never later than the deadline when it is black-holed.
  const database = deps.database;
  app.get("/healthz", async (c) => {
    if (database && database.breaker.state !== "closed") return c.json({ ok: false }, 503);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        deps.db.execute(sql`select 1`),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("deadline")), database?.deadlineMs ?? 1_500);
        }),
      ]);
      return c.json({ ok: true });
    } catch {
      return c.json({ ok: false }, 503);
    } finally {
      clearTimeout(timer);
    }
  });

  app.use("/v1/*", async function routerAuth(c, next) {
    const header = c.req.header("authorization") ?? "";
    if (!header.startsWith("Bearer ") || !constantTimeEqual(header.slice(7), deps.token)) {
      return c.json({ error: { code: "unauthorized", message: "unauthorized", requestId: "" } }, 401);
    }
    if (inFlight >= maxInFlight) {
      metrics?.overloaded.inc();
      return c.json({ error: { code: "overloaded", message: "overloaded", requestId: "" } }, 503);
    }
    inFlight++;
    metrics?.inFlight.set(inFlight);
    try {
      await next();
    } finally {
      inFlight--;
      metrics?.inFlight.set(inFlight);
    }
  });
  if (database) {
    app.use(
      "/v1/*",
      guardDatabase({
        ...database,
        refuse: (c, code) => c.json({ error: { code, message: MESSAGES[code], requestId: "" } }, 503),
      }),
    );
  }

  app.get("/v1/resolve/host/:host", async (c) => {
    const n = normalizeHostname(c.req.param("host"));
    if (!n.ok) return c.json({ host: { v: 0, tenantId: null }, tenant: null });
    const host = await hostEntry(deps.db, n.hostname);
    const tenant = host.tenantId ? await tenantEntry(deps.db, host.tenantId) : null;
    return c.json({ host, tenant });
  });

  app.get("/v1/resolve/tenant/:id", async (c) => c.json(await tenantEntry(deps.db, c.req.param("id"))));

  app.post("/v1/keys/verify", async (c) => {
    const parsed = VerifyKeyRequest.safeParse(await c.req.json().catch(() => null));
    if (!parsed.success) return c.json({ error: { code: "validation_failed", message: "bad request", requestId: "" } }, 400);
    const entry: KeyEntry = await keyEntry(deps.db, parsed.data.hash);
    const tenant = entry.key ? await tenantEntry(deps.db, entry.key.tenantId) : null;
    return c.json({ entry, tenant });
  });

  app.post("/v1/keys/used", async (c) => {
    const ids = (await c.req.json().catch(() => null)) as { ids?: unknown } | null;
    if (ids && Array.isArray(ids.ids)) {
      for (const id of ids.ids.slice(0, 10_000)) if (typeof id === "string" && id.startsWith("key_")) used.add(id);
    }
    return c.body(null, 204);
  });

  app.get("/v1/sessions/:id", async (c) => c.json(await sessionEntry(deps.db, c.req.param("id"))));

  app.notFound((c) => c.json({ error: { code: "not_found", message: "not found", requestId: "" } }, 404));
  app.onError((error, c) => {
    if (databaseUnavailable(error)) {
      const code = "database_unavailable";
      return c.json({ error: { code, message: MESSAGES[code], requestId: "" } }, 503);
    }
    deps.log.error({ err: error }, "key service error");
    return c.json({ error: { code: "internal", message: "internal error", requestId: "" } }, 500);
  });

  return { app, flushUsed, close: () => clearInterval(timer) };
}
