/**
 * A tenant's own row through its life: list, get, create (with its platform
 * subdomain), patch (status, plan, limit and feature overrides, settings) and delete
 * (with everything it owns). Each writes in one transaction and publishes after it
 * commits.
 */
import { and, asc, eq, gt, ilike, or } from "drizzle-orm";
import { newId } from "@portcullis/shared";
import { nextVersion } from "../db/client.ts";
import { uniqueViolation } from "../db/errors.ts";
import {
  apiKeys,
  databaseBindings,
  databaseServers,
  hostnames,
  sessions,
  type TenantLimitsOverride,
  type TenantSettings,
  tenants,
} from "../db/schema/index.ts";
import { PLANS } from "../plans.ts";
import { insertPlatformHostname } from "./hostnames.ts";
import { fail, type Outcome, ok } from "./outcome.ts";
import type { TenantStore } from "./store.ts";
import { checkSlug } from "./validation.ts";
import { findTenant, type TenantRow, type TenantView, tenantView, tenantViews } from "./views.ts";

export interface TenantPatch {
  status?: "active" | "suspended";
  plan?: string;
  limits?: TenantLimitsOverride;
  features?: Record<string, boolean>;
  settings?: TenantSettings;
}

/**
 * One page of tenants in slug order: at most `limit`, after the slug `after` (the
 * previous page's `next`); `next` is set when more follow.
 */
export interface TenantListQuery {
  limit: number;
  after?: string | undefined;
  q?: string | undefined;
  status?: "active" | "suspended" | undefined;
}

export async function listTenants(
  s: TenantStore,
  page: TenantListQuery = { limit: 1_000 },
): Promise<{ tenants: TenantView[]; next: string | null }> {
  // `q` matches a substring of the slug or the name, its LIKE wildcards taken literally.
  const like = page.q === undefined ? null : `%${page.q.replace(/[\\%_]/g, (m) => `\\${m}`)}%`;
  const rows = await s.db
    .select()
    .from(tenants)
    .where(
      and(
        page.after === undefined ? undefined : gt(tenants.slug, page.after),
        page.status === undefined ? undefined : eq(tenants.status, page.status),
        like === null ? undefined : or(ilike(tenants.slug, like), ilike(tenants.name, like)),
      ),
    )
    .orderBy(asc(tenants.slug))
    .limit(page.limit + 1);
  const more = rows.length > page.limit;
  const shown = more ? rows.slice(0, page.limit) : rows;
  return { tenants: await tenantViews(s, shown), next: more ? (shown.at(-1)?.slug ?? null) : null };
}

export async function getTenant(s: TenantStore, ref: string): Promise<Outcome<TenantView>> {
  const row = await findTenant(s, ref);
  return row ? ok(await tenantView(s, row)) : fail("not_found");
}

export async function createTenant(
  s: TenantStore,
  input: { slug: string; name: string; plan?: string | undefined },
): Promise<Outcome<TenantView>> {
  const slugCheck = checkSlug(input.slug);
  if (slugCheck === "invalid") return fail("validation_failed", "slug must be 1-40 of a-z, 0-9 and single hyphens");
  if (slugCheck === "reserved") return fail("slug_reserved");
  const plan = input.plan ?? "free";
  if (!(plan in PLANS)) return fail("validation_failed", `plan must be one of ${Object.keys(PLANS).join(", ")}`);
  const subdomain = `${input.slug}.${s.config.platformDomain}`;
  if (subdomain === s.config.apiHostname) return fail("slug_reserved");
  const id = newId("tenant");
  try {
    const view = await s.db.transaction(async (tx) => {
      const version = await nextVersion(tx);
      await tx.insert(tenants).values({ id, slug: input.slug, name: input.name, plan, version });
      await insertPlatformHostname(tx, id, subdomain, version, s.now());
      const [row] = await tx.select().from(tenants).where(eq(tenants.id, id));
      return tenantView(s, row as TenantRow, tx);
    });
    await s.publisher.publish({ tenants: [id], hosts: [subdomain] });
    return ok(view);
  } catch (error) {
    const constraint = uniqueViolation(error);
    if (constraint?.includes("slug")) return fail("slug_taken");
    if (constraint?.includes("hostname")) return fail("hostname_taken", subdomain);
    throw error;
  }
}

/**
 * `ifMatch`: the version (ETag) the client last read; the update is made only if the
 * tenant is still at it, else `precondition_failed` (RFC 9110 §13.1.1).
 */
export async function patchTenant(
  s: TenantStore,
  ref: string,
  patch: TenantPatch,
  options: { ifMatch?: readonly number[] } = {},
): Promise<Outcome<TenantView>> {
  if (patch.plan !== undefined && !(patch.plan in PLANS)) {
    return fail("validation_failed", `plan must be one of ${Object.keys(PLANS).join(", ")}`);
  }
  const result = await s.db.transaction(async (tx) => {
    const row = await findTenant(s, ref, tx);
    if (!row) return null;
    if (options.ifMatch !== undefined && !options.ifMatch.includes(row.version)) return "changed" as const;
    const version = await nextVersion(tx);
    const limits = patch.limits ? { ...row.limits, ...patch.limits } : row.limits;
    const features = patch.features ? { ...row.features, ...patch.features } : row.features;
    const settings = patch.settings
      ? {
          ...row.settings,
          ...patch.settings,
          branding: { ...(row.settings.branding ?? {}), ...(patch.settings.branding ?? {}) },
        }
      : row.settings;
    await tx
      .update(tenants)
      .set({
        status: patch.status ?? row.status,
        plan: patch.plan ?? row.plan,
        limits,
        features,
        settings,
        version,
        updatedAt: s.now(),
      })
      .where(eq(tenants.id, row.id));
    const [updated] = await tx.select().from(tenants).where(eq(tenants.id, row.id));
    const keys = await tx.select({ hash: apiKeys.hash }).from(apiKeys).where(eq(apiKeys.tenantId, row.id));
    return { before: row, view: await tenantView(s, updated as TenantRow, tx), keys: keys.map((k) => k.hash) };
  });
  if (!result) return fail("not_found");
  if (result === "changed") return fail("precondition_failed");
  // Status matters to key and session checks too: publish the tenant's keys with it.
  await s.publisher.publish({ tenants: [result.view.id], keys: result.keys });
  return ok(result.view);
}

export async function deleteTenant(s: TenantStore, ref: string): Promise<Outcome<{ id: string }>> {
  const result = await s.db.transaction(async (tx) => {
    const row = await findTenant(s, ref, tx);
    if (!row) return null;
    const hosts = await tx.select({ h: hostnames.hostname }).from(hostnames).where(eq(hostnames.tenantId, row.id));
    const keys = await tx.select({ h: apiKeys.hash }).from(apiKeys).where(eq(apiKeys.tenantId, row.id));
    const sess = await tx.select({ id: sessions.id }).from(sessions).where(eq(sessions.tenantId, row.id));
    const [binding] = await tx.select().from(databaseBindings).where(eq(databaseBindings.tenantId, row.id));
    await tx.delete(tenants).where(eq(tenants.id, row.id));
    // The server row is released too, so another tenant may be bound to it later.
    if (binding) await tx.delete(databaseServers).where(eq(databaseServers.id, binding.serverId));
    return { id: row.id, hosts: hosts.map((h) => h.h), keys: keys.map((k) => k.h), sessions: sess.map((x) => x.id) };
  });
  if (!result) return fail("not_found");
  await s.publisher.publish({ tenants: [result.id], hosts: result.hosts, keys: result.keys, sessions: result.sessions });
  return ok({ id: result.id });
}
