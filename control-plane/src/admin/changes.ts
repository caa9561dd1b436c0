/**
 * Configuration changes made through the admin API, recorded in `admin_changes`:
 * who (the admin token, plus the operator name a client states in
 * `X-Portcullis-Actor`), what (an action name and its target), and the state before
 * and after. Snapshots never hold secrets: tenants are recorded as their admin view,
 * keys as their metadata (never the key), sessions by id (never the token).
 *
 * Recorded after the change committed, from the same request; a failure to record
 * is logged as an error (the change itself stands).
 */
import type { MiddlewareHandler } from "hono";
import type { Logger } from "pino";
import type { Db } from "../db/client.ts";
import { adminChanges } from "../db/schema/index.ts";
import type { TenantService } from "../tenants/service.ts";
import type { Env } from "./app.ts";

interface Route {
  action: string;
  pattern: RegExp;
  /** What the snapshot describes: the tenant, or one key of it. */
  subject: "tenant" | "key" | "none";
}

// Ordered: the first match names the action.
const ROUTES: Record<string, Route[]> = {
  POST: [
    { action: "tenant.create", pattern: /^\/v1\/tenants$/, subject: "tenant" },
    { action: "hostname.add", pattern: /^\/v1\/tenants\/([^/]+)\/hostnames$/, subject: "tenant" },
    { action: "hostname.verify", pattern: /^\/v1\/tenants\/([^/]+)\/hostnames\/([^/]+)\/verify$/, subject: "tenant" },
    { action: "key.create", pattern: /^\/v1\/tenants\/([^/]+)\/keys$/, subject: "key" },
    { action: "user.create", pattern: /^\/v1\/tenants\/([^/]+)\/users$/, subject: "none" },
    { action: "session.create", pattern: /^\/v1\/tenants\/([^/]+)\/users\/([^/]+)\/sessions$/, subject: "none" },
    // The key is never recorded: the change is that a new version now signs.
    { action: "context-key.rotate", pattern: /^\/v1\/tenants\/([^/]+)\/context-key\/rotate$/, subject: "none" },
    // Many tenants at once: filed under none, the summary of what changed as `after`.
    { action: "config.apply", pattern: /^\/v1\/apply$/, subject: "none" },
  ],
  PATCH: [{ action: "tenant.update", pattern: /^\/v1\/tenants\/([^/]+)$/, subject: "tenant" }],
  PUT: [
    { action: "database.bind", pattern: /^\/v1\/tenants\/([^/]+)\/database$/, subject: "tenant" },
    { action: "upstreams.set", pattern: /^\/v1\/tenants\/([^/]+)\/upstreams$/, subject: "tenant" },
  ],
  DELETE: [
    { action: "tenant.delete", pattern: /^\/v1\/tenants\/([^/]+)$/, subject: "tenant" },
    { action: "hostname.delete", pattern: /^\/v1\/tenants\/([^/]+)\/hostnames\/([^/]+)$/, subject: "tenant" },
    { action: "key.revoke", pattern: /^\/v1\/tenants\/([^/]+)\/keys\/([^/]+)$/, subject: "key" },
    { action: "session.revoke", pattern: /^\/v1\/tenants\/([^/]+)\/sessions\/([^/]+)$/, subject: "none" },
  ],
};

const ACTOR = /^[A-Za-z0-9._@+-]{1,100}$/;

function decode(part: string | undefined): string | null {
  if (part === undefined) return null;
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** A rotation's answer without key material: versions and times only. */
function contextKeyView(answer: Record<string, unknown>): unknown {
  const previous = answer.previous as { version?: unknown; until?: unknown } | null | undefined;
  return {
    version: answer.version,
    previous: previous ? { version: previous.version, until: previous.until } : null,
  };
}

export function recordChanges(deps: { db: Db; tenants: TenantService; log: Logger; onRecorded?: () => void }) {
  const { db, tenants, log } = deps;

  async function snapshot(route: Route, ref: string, target: string | null): Promise<unknown> {
    if (route.subject === "tenant") {
      const view = await tenants.get(ref);
      return view.ok ? view.value : null;
    }
    if (route.subject === "key" && target !== null) {
      const keys = await tenants.listKeys(ref);
      return keys.ok ? (keys.value.find((k) => k.id === target) ?? null) : null;
    }
    return null;
  }

  const middleware: MiddlewareHandler<Env> = async function changes(c, next) {
    const path = c.req.path;
    const route = ROUTES[c.req.method]?.find((r) => r.pattern.test(path));
    if (!route) {
      // Reads are not changes; an unlisted write is still recorded, by method and path.
      if (c.req.method === "GET" || c.req.method === "HEAD" || c.req.method === "OPTIONS") return next();
    }
    const match = route?.pattern.exec(path) ?? null;
    const ref = decode(match?.[1]);
    const second = decode(match?.[2]);
    let target = second;
    const before = route && ref !== null ? await snapshot(route, ref, target).catch(() => null) : null;
    await next();
    if (c.res.status >= 300) return;
    try {
      let answer: Record<string, unknown> | null = null;
      if (c.res.status !== 204)
        answer = (await c.res
          .clone()
          .json()
          .catch(() => null)) as Record<string, unknown> | null;
      let tenantRef = ref;
      let after: unknown = null;
      if (route?.action === "tenant.create") tenantRef = typeof answer?.id === "string" ? answer.id : null;
      if (route?.action === "key.create" || route?.action === "user.create" || route?.action === "session.create") {
        target = typeof answer?.id === "string" ? answer.id : target;
      }
      if (route && tenantRef !== null && route.action !== "tenant.delete") after = await snapshot(route, tenantRef, target);
      if (route?.action === "user.create" && answer) after = { id: answer.id, email: answer.email };
      if (route?.action === "session.create" && answer) after = { id: answer.id, userId: second, expiresAt: answer.expiresAt };
      if (route?.action === "context-key.rotate" && answer) after = contextKeyView(answer);
      if (route?.action === "config.apply" && answer) after = answer;
      // Only a tenant snapshot's id is the tenant's: a key snapshot's is the key's
      // (a revocation was once filed under the key id and missing from the tenant's log).
      const tenantId =
        (route?.subject === "tenant"
          ? ((before as { id?: string } | null)?.id ?? (after as { id?: string } | null)?.id)
          : undefined) ?? (tenantRef !== null ? ((await tenants.find(tenantRef))?.id ?? null) : null);
      const stated = c.req.header("x-portcullis-actor");
      await db.insert(adminChanges).values({
        actor: stated && ACTOR.test(stated) ? `admin:${stated}` : "admin",
        requestId: c.get("requestId"),
        action: route?.action ?? `${c.req.method} ${path}`,
        tenantId,
        target,
        before: before ?? null,
        after: after ?? null,
      });
      deps.onRecorded?.();
    } catch (error) {
      log.error({ err: error, requestId: c.get("requestId") }, "recording an admin change failed");
    }
  };
  return middleware;
}
