/**
 * Reading tenants: finding one by id or slug (locked for the rest of a transaction
 * when found inside one), and the view of a tenant the admin API answers with.
 */
import { asc, eq, inArray } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import {
  databaseBindings,
  databaseServers,
  hostnames,
  type TenantLimitsOverride,
  type TenantSettings,
  tenants,
  upstreams,
} from "../db/schema/index.ts";
import { effectiveFeatures, effectiveLimits } from "../records/index.ts";
import type { TenantStore } from "./store.ts";

export type TenantRow = typeof tenants.$inferSelect;

export interface TenantView {
  id: string;
  slug: string;
  name: string;
  status: string;
  plan: string;
  limits: ReturnType<typeof effectiveLimits>;
  features: Record<string, boolean>;
  settings: TenantSettings;
  overrides: { limits: TenantLimitsOverride; features: Record<string, boolean> };
  hostnames: { hostname: string; kind: string; status: string }[];
  database: { server: string; database: string } | null;
  upstreams: string[];
  createdAt: string;
  updatedAt: string;
  /** The tenant's routing version: its `ETag`, for `If-Match` on updates. */
  version: number;
}

/**
 * `:tenant` in the admin API is an id or a slug. Inside a transaction the row is
 * locked (FOR UPDATE) until it commits: every read-modify-write of a tenant holds it,
 * so two concurrent updates run one after the other, each on the other's result (no
 * lost update), and take their routing versions in commit order.
 */
export async function findTenant(s: TenantStore, ref: string, executor: Executor = s.db): Promise<TenantRow | null> {
  const query = executor
    .select()
    .from(tenants)
    .where(ref.startsWith("ten_") ? eq(tenants.id, ref) : eq(tenants.slug, ref));
  const [row] = executor === s.db ? await query : await query.for("update");
  return row ?? null;
}

export async function tenantView(s: TenantStore, row: TenantRow, executor: Executor = s.db): Promise<TenantView> {
  return (await tenantViews(s, [row], executor))[0] as TenantView;
}

/** The views of many tenants in four queries, whatever their number (a page of the list). */
export async function tenantViews(s: TenantStore, rows: TenantRow[], executor: Executor = s.db): Promise<TenantView[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  const [hosts, bindings, ups] = await Promise.all([
    executor
      .select({ tenantId: hostnames.tenantId, hostname: hostnames.hostname, kind: hostnames.kind, status: hostnames.status })
      .from(hostnames)
      .where(inArray(hostnames.tenantId, ids))
      .orderBy(asc(hostnames.createdAt), asc(hostnames.hostname)),
    executor
      .select({ tenantId: databaseBindings.tenantId, server: databaseServers.address, database: databaseBindings.database })
      .from(databaseBindings)
      .innerJoin(databaseServers, eq(databaseServers.id, databaseBindings.serverId))
      .where(inArray(databaseBindings.tenantId, ids)),
    executor
      .select({ tenantId: upstreams.tenantId, url: upstreams.url })
      .from(upstreams)
      .where(inArray(upstreams.tenantId, ids))
      .orderBy(asc(upstreams.position)),
  ]);
  const byTenant = <T extends { tenantId: string }>(list: T[]) => {
    const out = new Map<string, T[]>();
    for (const item of list) {
      const group = out.get(item.tenantId);
      if (group) group.push(item);
      else out.set(item.tenantId, [item]);
    }
    return out;
  };
  const hostsOf = byTenant(hosts);
  const bindingOf = byTenant(bindings);
  const upsOf = byTenant(ups);
  return rows.map((row) => {
    const binding = bindingOf.get(row.id)?.[0];
    return {
      id: row.id,
      slug: row.slug,
      name: row.name,
      status: row.status,
      plan: row.plan,
      limits: effectiveLimits(row),
      features: effectiveFeatures(row),
      settings: row.settings,
      overrides: { limits: row.limits, features: row.features },
      hostnames: (hostsOf.get(row.id) ?? []).map(({ hostname, kind, status }) => ({ hostname, kind, status })),
      database: binding ? { server: binding.server, database: binding.database } : null,
      upstreams: (upsOf.get(row.id) ?? []).map((u) => u.url),
      createdAt: row.createdAt.toISOString(),
      updatedAt: row.updatedAt.toISOString(),
      version: row.version,
    };
  });
}
