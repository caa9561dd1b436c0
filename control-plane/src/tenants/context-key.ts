/**
 * Tenant context keys in the admin API: the key a tenant's app verifies its signed
 * context with, and its rotation. Keys are derived (shared/src/crypto/context.ts), so
 * nothing secret is stored: a tenant row holds only which versions sign.
 *
 *   GET  /v1/tenants/:tenant/context-key          the keys that sign now
 *   POST /v1/tenants/:tenant/context-key/rotate   {overlapSeconds?} a new version; the
 *        previous one keeps signing beside it for the overlap (default 24 h, 0 ends it
 *        at once, for a key that leaked), so apps can be given the new key meanwhile
 *
 * Each key is shown to the platform's operator (admin token) for one tenant only;
 * a tenant's app is given its own and can therefore sign nothing for another tenant.
 */
import { contextKeyToken } from "@portcullis/shared";
import { eq, sql } from "drizzle-orm";
import type { Hono } from "hono";
import type { Env } from "../admin/app.ts";
import { adminError } from "../admin/errors.ts";
import { OPERATIONS as OP, route } from "../admin/operations.ts";
import { rotateContextKey } from "../admin/schemas.ts";
import { type Db, nextVersion } from "../db/client.ts";
import { tenants } from "../db/schema/index.ts";
import type { TenantSettings } from "../db/schema/tenants.ts";
import type { Publisher } from "../publish/index.ts";
import type { TenantService } from "./service.ts";

const DAY_S = 86_400;
const Rotate = rotateContextKey;

type State = NonNullable<TenantSettings["contextKey"]>;
const FIRST: State = { version: 1, previous: null };

function view(master: string, tenantId: string, state: State, now: number) {
  const previous = state.previous !== null && state.previous.until > now ? state.previous : null;
  return {
    tenantId,
    version: state.version,
    key: contextKeyToken(master, tenantId, state.version),
    previous:
      previous === null
        ? null
        : {
            version: previous.version,
            key: contextKeyToken(master, tenantId, previous.version),
            until: new Date(previous.until).toISOString(),
          },
  };
}

export function mountContextKeyRoutes(
  app: Hono<Env>,
  deps: { db: Db; tenants: TenantService; publisher: Publisher; master: string; now?: () => number },
): void {
  const now = deps.now ?? Date.now;

  route(app, OP.getContextKey, async (c) => {
    const row = await deps.tenants.find(c.req.param("tenant"));
    if (!row) return adminError(c, "not_found");
    c.header("cache-control", "no-store");
    return c.json(view(deps.master, row.id, row.settings.contextKey ?? FIRST, now()));
  });

  route(app, OP.rotateContextKey, async (c) => {
    const text = await c.req.text();
    let body: unknown = {};
    try {
      if (text.trim() !== "") body = JSON.parse(text);
    } catch {
      return adminError(c, "invalid_json");
    }
    const parsed = Rotate.safeParse(body);
    if (!parsed.success) return adminError(c, "validation_failed", parsed.error.issues[0]?.message);
    const overlapMs = (parsed.data.overlapSeconds ?? DAY_S) * 1_000;
    const ref = c.req.param("tenant");
    // One rotation at a time per tenant: the row is locked, so two concurrent
    // rotations give two successive versions, never the same one twice.
    const rotated = await deps.db.transaction(async (tx) => {
      const found = await deps.tenants.find(ref, tx);
      if (!found) return null;
      const [row] = await tx.select().from(tenants).where(eq(tenants.id, found.id)).for("update");
      if (!row) return null;
      const current = row.settings.contextKey ?? FIRST;
      const at = now();
      const next: State = {
        version: current.version + 1,
        previous: overlapMs > 0 ? { version: current.version, until: at + overlapMs } : null,
      };
      await tx
        .update(tenants)
        .set({
          settings: sql`${tenants.settings} || ${JSON.stringify({ contextKey: next })}::jsonb`,
          version: await nextVersion(tx),
          updatedAt: new Date(at),
        })
        .where(eq(tenants.id, row.id));
      return { id: row.id, state: next, at };
    });
    if (rotated === null) return adminError(c, "not_found");
    await deps.publisher.publish({ tenants: [rotated.id] });
    c.header("cache-control", "no-store");
    return c.json(view(deps.master, rotated.id, rotated.state, rotated.at));
  });
}
