/**
 * Where a tenant's traffic goes: its database binding (one tenant per database
 * server, enforced by the database) and its ordered list of upstream origins. Each
 * change bumps the tenant's routing version and is published after it commits.
 */
import { eq } from "drizzle-orm";
import { newId } from "@portcullis/shared";
import { nextVersion } from "../db/client.ts";
import { uniqueViolation } from "../db/errors.ts";
import { apiKeys, databaseBindings, databaseServers, tenants, upstreams } from "../db/schema/index.ts";
import { fail, type Outcome, ok } from "./outcome.ts";
import type { TenantStore } from "./store.ts";
import { normalizeServer, normalizeUpstream } from "./validation.ts";
import { findTenant } from "./views.ts";

export async function putDatabase(
  s: TenantStore,
  ref: string,
  input: { server: string; database: string },
): Promise<Outcome<{ server: string; database: string }>> {
  const canonical = normalizeServer(input.server);
  if (!canonical.ok) return fail("validation_failed", canonical.detail);
  const server = canonical.server;
  if (!/^[A-Za-z0-9_][A-Za-z0-9_$-]{0,62}$/.test(input.database)) {
    return fail("validation_failed", "database must be a plain database name");
  }
  try {
    const result = await s.db.transaction(async (tx) => {
      const row = await findTenant(s, ref, tx);
      if (!row) return null;
      const [existing] = await tx.select().from(databaseServers).where(eq(databaseServers.address, server));
      const [current] = await tx.select().from(databaseBindings).where(eq(databaseBindings.tenantId, row.id));
      let serverId = existing?.id;
      if (!serverId) {
        serverId = newId("server");
        await tx.insert(databaseServers).values({ id: serverId, address: server });
      }
      if (current) {
        await tx
          .update(databaseBindings)
          .set({ serverId, database: input.database })
          .where(eq(databaseBindings.tenantId, row.id));
        if (current.serverId !== serverId) await tx.delete(databaseServers).where(eq(databaseServers.id, current.serverId));
      } else {
        await tx.insert(databaseBindings).values({ tenantId: row.id, serverId, database: input.database });
      }
      await tx
        .update(tenants)
        .set({ version: await nextVersion(tx), updatedAt: s.now() })
        .where(eq(tenants.id, row.id));
      const keys = await tx.select({ h: apiKeys.hash }).from(apiKeys).where(eq(apiKeys.tenantId, row.id));
      return { id: row.id, keys: keys.map((k) => k.h) };
    });
    if (!result) return fail("not_found");
    await s.publisher.publish({ tenants: [result.id], keys: result.keys });
    return ok({ server, database: input.database });
  } catch (error) {
    if (uniqueViolation(error)) return fail("server_taken", server);
    throw error;
  }
}

export async function putUpstreams(s: TenantStore, ref: string, urls: string[]): Promise<Outcome<{ urls: string[] }>> {
  const normalized: string[] = [];
  for (const url of urls) {
    const n = normalizeUpstream(url);
    if (!n) return fail("validation_failed", `not an upstream origin: ${url}`);
    if (!normalized.includes(n)) normalized.push(n);
  }
  const id = await s.db.transaction(async (tx) => {
    const row = await findTenant(s, ref, tx);
    if (!row) return null;
    await tx.delete(upstreams).where(eq(upstreams.tenantId, row.id));
    if (normalized.length > 0) {
      await tx
        .insert(upstreams)
        .values(normalized.map((url, position) => ({ id: newId("upstream"), tenantId: row.id, url, position })));
    }
    await tx
      .update(tenants)
      .set({ version: await nextVersion(tx), updatedAt: s.now() })
      .where(eq(tenants.id, row.id));
    return row.id;
  });
  if (!id) return fail("not_found");
  await s.publisher.publish({ tenants: [id] });
  return ok({ urls: normalized });
}
