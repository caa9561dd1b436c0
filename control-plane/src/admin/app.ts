/**
 * The admin API (contract: "Admin API"). Bearer-token auth compared in constant time;
 * bodies validated with zod; every answer JSON; errors in one shape (docs/errors.md).
 */
import { Hono, type Context, type MiddlewareHandler } from "hono";
import type { z } from "zod";
import { type CircuitBreaker, constantTimeEqual, newId } from "@portcullis/shared";
import type { Logger } from "pino";
import type { ApplyService } from "../apply/index.ts";
import { databaseUnavailable } from "../db/errors.ts";
import { guardDatabase } from "../db/guard.ts";
import { type TlsAsk, tlsAskHandler } from "../domains/tls-ask.ts";
import type { Outcome, TenantService } from "../tenants/service.ts";
import { adminError, errorBody } from "./errors.ts";
import { mountReference } from "./reference.ts";
import { OPERATIONS as OP, route } from "./operations.ts";
import * as S from "./schemas.ts";

export type Env = { Variables: { requestId: string } };

export interface AdminAppDeps {
  tenants: TenantService;
  adminToken: string;
  log: Logger;
  /** On-demand TLS permission answers (`GET /v1/tls/ask`). */
  tlsAsk?: TlsAsk;
  /** Declarative apply (`POST /v1/apply`). */
  apply?: ApplyService;
  /** Extra routes (audit, usage, explain) mounted by later modules. */
  extend?: (app: Hono<Env>) => void;
  /** Runs around every authenticated call (records configuration changes: admin/changes.ts). */
  changes?: MiddlewareHandler<Env>;
  /** Observes each call's duration (metrics). */
  observe?: (method: string, status: number, seconds: number) => void;
  /**
   * Postgres' breaker and the per-request deadline (db/guard.ts): with them, every
   * `/v1` call answers within `deadlineMs`, 503 at once while Postgres is known down.
   */
  database?: { breaker: CircuitBreaker; deadlineMs: number };
}

async function body<T extends z.ZodType>(
  c: Context<Env>,
  schema: T,
): Promise<{ ok: true; value: z.infer<T> } | { ok: false; res: Response }> {
  let raw: unknown;
  try {
    raw = await c.req.json();
  } catch {
    return { ok: false, res: adminError(c, "invalid_json") };
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ");
    return { ok: false, res: adminError(c, "validation_failed", detail) };
  }
  return { ok: true, value: parsed.data };
}

function answer<T>(c: Context<Env>, outcome: Outcome<T>, status: 200 | 201 | 204 = 200) {
  if (!outcome.ok) return adminError(c, outcome.code, outcome.detail);
  if (status === 204) return c.body(null, 204);
  return c.json(outcome.value as object, status);
}

/** A tenant answer with its version as a strong `ETag` (RFC 9110 §8.8.3), for `If-Match`. */
function withEtag(c: Context<Env>, outcome: Outcome<{ version: number }>) {
  if (outcome.ok) c.header("etag", `"${outcome.value.version}"`);
  return answer(c, outcome);
}

/**
 * The versions an `If-Match` accepts: null without the header or with `*` (any
 * current tenant). Comparison is strong (RFC 9110 §13.1.1): a weak or malformed tag
 * matches nothing, so the update is refused rather than made blind.
 */
function entityTags(header: string | undefined): number[] | null {
  if (header === undefined) return null;
  const tags = header.split(",").map((t) => t.trim());
  if (tags.includes("*")) return null;
  const versions: number[] = [];
  for (const tag of tags) {
    const m = /^"(\d{1,16})"$/.exec(tag);
    if (m) versions.push(Number(m[1]));
  }
  return versions;
}

export function createAdminApp(deps: AdminAppDeps): Hono<Env> {
  const app = new Hono<Env>();
  const { tenants } = deps;

  app.use(async function requestId(c, next) {
    const started = performance.now();
    c.set("requestId", newId("request"));
    c.header("x-request-id", c.get("requestId"));
    await next();
    // Admin calls are few: each is logged (never its body: keys and tokens live there).
    const seconds = (performance.now() - started) / 1000;
    deps.observe?.(c.req.method, c.res.status, seconds);
    deps.log.info(
      {
        requestId: c.get("requestId"),
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        ms: Math.round(seconds * 1000),
      },
      "admin request",
    );
  });

  route(app, OP.health, (c) => c.json({ ok: true }));

  if (deps.database) {
    app.use(
      "/v1/*",
      guardDatabase({
        ...deps.database,
        refuse: (c, code) => {
          c.header("retry-after", "1");
          return adminError(c, code);
        },
      }),
    );
  }

  // Registered before bearer auth on purpose: a TLS terminator (Caddy's on_demand_tls
  // `ask`) calls it without credentials. It reveals only whether a name is served.
  const tlsAsk = deps.tlsAsk;
  if (tlsAsk) {
    // Cached answers, and a per-source limit on database queries (domains/tls-ask.ts).
    route(app, OP.tlsAsk, tlsAskHandler(tlsAsk));
  }

  // The document and its reference page describe the API and hold nothing secret;
  // open like the TLS ask, so a browser can read them without the admin token.
  mountReference(app);

  app.use("/v1/*", async function bearerAuth(c, next) {
    const header = c.req.header("authorization") ?? "";
    const token = header.startsWith("Bearer ") ? header.slice(7) : "";
    if (!token || !constantTimeEqual(token, deps.adminToken)) {
      c.header("www-authenticate", 'Bearer realm="portcullis-admin"');
      return adminError(c, "unauthorized");
    }
    await next();
  });
  if (deps.changes) app.use("/v1/*", deps.changes);

  route(app, OP.createTenant, async (c) => {
    const b = await body(c, S.createTenant);
    if (!b.ok) return b.res;
    return answer(c, await tenants.create(b.value), 201);
  });
  // Paged (a platform may hold a million tenants): `limit` (1–1000, default 1000) and
  // `after` (the previous page's `next`).
  route(app, OP.listTenants, async (c) => {
    const q = S.listTenants.safeParse({
      limit: c.req.query("limit"),
      after: c.req.query("after"),
      q: c.req.query("q"),
      status: c.req.query("status"),
    });
    if (!q.success) {
      const detail = q.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
      return adminError(c, "validation_failed", detail);
    }
    const page = await tenants.list(q.data);
    return c.json(page.next === null ? { tenants: page.tenants } : { tenants: page.tenants, next: page.next });
  });
  route(app, OP.getTenant, async (c) => withEtag(c, await tenants.get(c.req.param("tenant"))));
  route(app, OP.patchTenant, async (c) => {
    const b = await body(c, S.patchTenant);
    if (!b.ok) return b.res;
    const ifMatch = entityTags(c.req.header("if-match"));
    return withEtag(c, await tenants.patch(c.req.param("tenant"), b.value, ifMatch === null ? {} : { ifMatch }));
  });
  route(app, OP.deleteTenant, async (c) => answer(c, await tenants.delete(c.req.param("tenant")), 204));

  route(app, OP.putDatabase, async (c) => {
    const b = await body(c, S.database);
    if (!b.ok) return b.res;
    return answer(c, await tenants.putDatabase(c.req.param("tenant"), b.value));
  });
  route(app, OP.putUpstreams, async (c) => {
    const b = await body(c, S.upstreams);
    if (!b.ok) return b.res;
    return answer(c, await tenants.putUpstreams(c.req.param("tenant"), b.value.urls));
  });

  route(app, OP.addHostname, async (c) => {
    const b = await body(c, S.hostname);
    if (!b.ok) return b.res;
    return answer(c, await tenants.addHostname(c.req.param("tenant"), b.value.hostname), 201);
  });
  route(app, OP.listHostnames, async (c) => {
    const outcome = await tenants.listHostnames(c.req.param("tenant"));
    return outcome.ok ? c.json({ hostnames: outcome.value }) : adminError(c, outcome.code, outcome.detail);
  });
  route(app, OP.verifyHostname, async (c) =>
    answer(c, await tenants.verifyHostname(c.req.param("tenant"), c.req.param("hostname"))),
  );
  route(app, OP.deleteHostname, async (c) =>
    answer(c, await tenants.deleteHostname(c.req.param("tenant"), c.req.param("hostname")), 204),
  );

  route(app, OP.createKey, async (c) => {
    const b = await body(c, S.key);
    if (!b.ok) return b.res;
    return answer(c, await tenants.createKey(c.req.param("tenant"), b.value), 201);
  });
  route(app, OP.listKeys, async (c) => {
    const outcome = await tenants.listKeys(c.req.param("tenant"));
    return outcome.ok ? c.json({ keys: outcome.value }) : adminError(c, outcome.code, outcome.detail);
  });
  route(app, OP.revokeKey, async (c) => answer(c, await tenants.revokeKey(c.req.param("tenant"), c.req.param("keyId")), 204));

  route(app, OP.createUser, async (c) => {
    const b = await body(c, S.user);
    if (!b.ok) return b.res;
    return answer(c, await tenants.createUser(c.req.param("tenant"), b.value), 201);
  });
  route(app, OP.createSession, async (c) =>
    answer(c, await tenants.createSession(c.req.param("tenant"), c.req.param("userId")), 201),
  );
  route(app, OP.revokeSession, async (c) =>
    answer(c, await tenants.revokeSession(c.req.param("tenant"), c.req.param("sessionId")), 204),
  );

  const applyService = deps.apply;
  if (applyService) {
    route(app, OP.apply, async (c) => {
      const b = await body(c, S.ApplyRequest);
      if (!b.ok) return b.res;
      const result = await applyService.apply(b.value, { requestId: c.get("requestId") });
      if (result.code === "invalid") {
        return c.json({ ...errorBody(c, "apply_invalid", result.issues.join("; ")), issues: result.issues }, 422);
      }
      if (result.code === "conflicts" && !b.value.dryRun) {
        return c.json({ ...errorBody(c, "apply_conflict", `${result.conflicts.length} conflict(s)`), ...result.report }, 409);
      }
      return c.json(result.report, 200);
    });
  }

  deps.extend?.(app);

  app.notFound((c) => adminError(c, "not_found"));
  app.onError((error, c) => {
    if (databaseUnavailable(error)) {
      // An outage, not a bug: the guard counts it and the client is told to retry.
      deps.log.warn({ err: error, requestId: c.get("requestId") }, "admin API: database unavailable");
      c.header("retry-after", "1");
      return adminError(c, "database_unavailable");
    }
    deps.log.error({ err: error, requestId: c.get("requestId") }, "admin API error");
    return adminError(c, "internal");
  });
  return app;
}
