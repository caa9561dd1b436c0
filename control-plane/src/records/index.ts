/**
 * Builds the cache records (shared/contracts) from the database: what a router
 * needs to decide, and nothing else. Used by the publisher (after writes) and the
 * key service (on a router's miss), so both always agree.
 */
import { and, eq, inArray } from "drizzle-orm";
import type { HostEntry, KeyEntry, Limits, SessionEntry, TenantEntry, TenantRecord } from "@portcullis/shared";
import { currentVersion, type Executor } from "../db/client.ts";
import { apiKeys, databaseBindings, databaseServers, hostnames, sessions, tenants, upstreams } from "../db/schema/index.ts";
import { PLANS, type PlanName } from "../plans.ts";

type TenantRow = typeof tenants.$inferSelect;

export function effectiveLimits(row: Pick<TenantRow, "plan" | "limits">): Limits {
  const plan = PLANS[row.plan as PlanName] ?? PLANS.free;
  const out = { ...plan.limits } as Limits;
  for (const [k, v] of Object.entries(row.limits ?? {})) {
    if (v !== undefined && k in out) (out as Record<string, number | null>)[k] = v;
  }
  return out;
}

export function effectiveFeatures(row: Pick<TenantRow, "plan" | "features">): Record<string, boolean> {
  const plan = PLANS[row.plan as PlanName] ?? PLANS.free;
  return { ...plan.features, ...(row.features ?? {}) };
}

export async function loadTenantRecords(
  db: Executor,
  ids: string[],
): Promise<Map<string, { record: TenantRecord; version: number }>> {
  const out = new Map<string, { record: TenantRecord; version: number }>();
  if (ids.length === 0) return out;
  const rows = await db.select().from(tenants).where(inArray(tenants.id, ids));
  if (rows.length === 0) return out;
  const found = rows.map((r) => r.id);
  const bindings = await db
    .select({ tenantId: databaseBindings.tenantId, database: databaseBindings.database, server: databaseServers.address })
    .from(databaseBindings)
    .innerJoin(databaseServers, eq(databaseServers.id, databaseBindings.serverId))
    .where(inArray(databaseBindings.tenantId, found));
  const ups = await db
    .select({ tenantId: upstreams.tenantId, url: upstreams.url, position: upstreams.position })
    .from(upstreams)
    .where(inArray(upstreams.tenantId, found))
    .orderBy(upstreams.position);
  for (const row of rows) {
    const binding = bindings.find((b) => b.tenantId === row.id);
    out.set(row.id, {
      version: row.version,
      record: {
        id: row.id,
        slug: row.slug,
        status: row.status,
        plan: row.plan,
        binding: binding ? { server: binding.server, database: binding.database } : null,
        upstreams: ups.filter((u) => u.tenantId === row.id).map((u) => u.url),
        limits: effectiveLimits(row),
        features: effectiveFeatures(row),
        settings: {
          allowedIps: row.settings?.allowedIps ?? [],
          branding: { displayName: row.name, ...(row.settings?.branding ?? {}) },
        },
        ...(row.settings?.contextKey ? { contextKey: row.settings.contextKey } : {}),
      },
    });
  }
  return out;
}

export async function tenantEntry(db: Executor, id: string, tombstoneVersion?: number): Promise<TenantEntry> {
  const found = (await loadTenantRecords(db, [id])).get(id);
  if (found) return { v: found.version, tenant: found.record };
  return { v: tombstoneVersion ?? (await currentVersion(db)), tenant: null };
}

/** A host routes only when it is verified; pending and failed names resolve to nothing. */
export async function hostEntry(db: Executor, hostname: string, tombstoneVersion?: number): Promise<HostEntry> {
  const [row] = await db
    .select({ tenantId: hostnames.tenantId, status: hostnames.status, version: hostnames.version })
    .from(hostnames)
    .where(eq(hostnames.hostname, hostname));
  if (row) return { v: row.version, tenantId: row.status === "verified" ? row.tenantId : null };
  return { v: tombstoneVersion ?? (await currentVersion(db)), tenantId: null };
}

export async function keyEntry(db: Executor, hash: string, tombstoneVersion?: number): Promise<KeyEntry> {
  const [row] = await db
    .select({
      id: apiKeys.id,
      tenantId: apiKeys.tenantId,
      expiresAt: apiKeys.expiresAt,
      revokedAt: apiKeys.revokedAt,
      rateLimitRps: apiKeys.rateLimitRps,
      rateLimitBurst: apiKeys.rateLimitBurst,
      version: apiKeys.version,
      tenantVersion: tenants.version,
    })
    .from(apiKeys)
    .innerJoin(tenants, eq(tenants.id, apiKeys.tenantId))
    .where(eq(apiKeys.hash, hash));
  if (!row) return { v: tombstoneVersion ?? (await currentVersion(db)), key: null };
  // As new as the positive record it replaces (which counted the tenant's version too).
  if (row.revokedAt) return { v: Math.max(row.version, row.tenantVersion), revoked: true, key: null };
  const [binding] = await db
    .select({ server: databaseServers.address, database: databaseBindings.database })
    .from(databaseBindings)
    .innerJoin(databaseServers, eq(databaseServers.id, databaseBindings.serverId))
    .where(eq(databaseBindings.tenantId, row.tenantId));
  return {
    // A key record also carries the tenant's binding, so it is as new as either.
    v: Math.max(row.version, row.tenantVersion),
    key: {
      keyId: row.id,
      tenantId: row.tenantId,
      expiresAt: row.expiresAt ? row.expiresAt.getTime() : null,
      binding: binding ?? null,
      limits: row.rateLimitRps === null ? null : { requestsPerSecond: row.rateLimitRps, burst: row.rateLimitBurst },
    },
  };
}

export async function sessionEntry(db: Executor, sessionId: string, tombstoneVersion?: number): Promise<SessionEntry> {
  const [row] = await db
    .select()
    .from(sessions)
    .where(and(eq(sessions.id, sessionId)));
  if (!row) return { v: tombstoneVersion ?? (await currentVersion(db)), session: null };
  return {
    v: row.version,
    session: {
      tenantId: row.tenantId,
      userId: row.userId,
      revoked: row.revokedAt !== null,
      expiresAt: row.expiresAt.getTime(),
    },
  };
}
