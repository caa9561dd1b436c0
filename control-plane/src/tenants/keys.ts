/**
 * A tenant's API keys: created (the key shown once, only its hash stored), listed
 * with their status, revoked, and their last use recorded in batches.
 */
import { and, asc, eq, inArray } from "drizzle-orm";
import { generateApiKey, newId } from "@portcullis/shared";
import { nextVersion } from "../db/client.ts";
import { apiKeys } from "../db/schema/index.ts";
import { fail, type Outcome, ok } from "./outcome.ts";
import type { TenantStore } from "./store.ts";
import { findTenant } from "./views.ts";

export async function createKey(
  s: TenantStore,
  ref: string,
  input: {
    name?: string | undefined;
    expiresAt?: string | undefined;
    limits?: { requestsPerSecond: number; burst?: number | null | undefined } | undefined;
  },
) {
  const row = await findTenant(s, ref);
  if (!row) return fail<never>("not_found");
  let expiresAt: Date | null = null;
  if (input.expiresAt !== undefined) {
    expiresAt = new Date(input.expiresAt);
    if (Number.isNaN(expiresAt.getTime())) return fail<never>("validation_failed", "expiresAt must be an ISO 8601 time");
    if (expiresAt.getTime() <= s.now().getTime()) return fail<never>("validation_failed", "expiresAt must be in the future");
  }
  const limits = input.limits ? { requestsPerSecond: input.limits.requestsPerSecond, burst: input.limits.burst ?? null } : null;
  const generated = generateApiKey();
  const id = newId("key");
  await s.db.insert(apiKeys).values({
    id,
    tenantId: row.id,
    hash: generated.hash,
    prefix: generated.prefix,
    name: input.name ?? null,
    expiresAt,
    rateLimitRps: limits?.requestsPerSecond ?? null,
    rateLimitBurst: limits?.burst ?? null,
    version: await nextVersion(s.db),
  });
  // Purges a cached "unknown key" for this hash (vanishingly unlikely, but cheap).
  await s.publisher.publish({ keys: [generated.hash] });
  return ok({
    id,
    key: generated.key,
    prefix: generated.prefix,
    name: input.name ?? null,
    expiresAt: expiresAt?.toISOString() ?? null,
    limits,
  });
}

export async function listKeys(s: TenantStore, ref: string) {
  const row = await findTenant(s, ref);
  if (!row) return fail<never>("not_found");
  const keys = await s.db
    .select({
      id: apiKeys.id,
      prefix: apiKeys.prefix,
      name: apiKeys.name,
      createdAt: apiKeys.createdAt,
      expiresAt: apiKeys.expiresAt,
      revokedAt: apiKeys.revokedAt,
      lastUsedAt: apiKeys.lastUsedAt,
      rateLimitRps: apiKeys.rateLimitRps,
      rateLimitBurst: apiKeys.rateLimitBurst,
    })
    .from(apiKeys)
    .where(eq(apiKeys.tenantId, row.id))
    .orderBy(asc(apiKeys.createdAt));
  const now = s.now().getTime();
  return ok(
    keys.map(({ rateLimitRps, rateLimitBurst, ...k }) => ({
      ...k,
      limits: rateLimitRps === null ? null : { requestsPerSecond: rateLimitRps, burst: rateLimitBurst },
      status: k.revokedAt ? "revoked" : k.expiresAt && k.expiresAt.getTime() <= now ? "expired" : "active",
    })),
  );
}

export async function revokeKey(s: TenantStore, ref: string, keyId: string): Promise<Outcome<null>> {
  const row = await findTenant(s, ref);
  if (!row) return fail("not_found");
  const [key] = await s.db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.id, keyId), eq(apiKeys.tenantId, row.id)));
  if (!key) return fail("not_found");
  if (!key.revokedAt) {
    await s.db
      .update(apiKeys)
      .set({ revokedAt: s.now(), version: await nextVersion(s.db) })
      .where(eq(apiKeys.id, key.id));
  }
  await s.publisher.publish({ keys: [key.hash] });
  return ok(null);
}

/** Record last use of keys (batched by the key service; no write per request). */
export async function touchKeys(s: TenantStore, ids: string[], at: Date): Promise<void> {
  if (ids.length === 0) return;
  await s.db.update(apiKeys).set({ lastUsedAt: at }).where(inArray(apiKeys.id, ids));
}
