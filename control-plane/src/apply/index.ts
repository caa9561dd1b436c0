/**
 * `POST /v1/apply`: validate a tenant file, check it against itself and the live
 * system (plan.ts), and — unless it is a dry run — apply all of it in one database
 * transaction or nothing. The plan is computed again inside the transaction, and
 * the database's unique constraints (hostnames, database servers, slugs) settle any
 * race with a concurrent admin call: the loser rolls back whole. Routers hear of the
 * changes only after the commit.
 */
import { randomBytes } from "node:crypto";
import { and, eq, inArray } from "drizzle-orm";
import { confusableSkeleton, newId } from "@portcullis/shared";
import { type Db, type Executor, nextVersion } from "../db/client.ts";
import { uniqueViolation } from "../db/errors.ts";
import { adminChanges, apiKeys, databaseBindings, databaseServers, hostnames, tenants, upstreams } from "../db/schema/index.ts";
import { lockSkeletons, type PlatformNames } from "../domains/hostnames.ts";
import { verificationName, verificationValue } from "../domains/verify.ts";
import type { Publisher } from "../publish/index.ts";
import { insertPlatformHostname } from "../tenants/service.ts";
import { type Conflict, type LiveState, type PlannedChange, planApply } from "./plan.ts";
import { type ApplyRequest, type NormalizedTenant, normalizeTenantFile } from "./spec.ts";

export interface ApplyReport {
  dryRun: boolean;
  applied: boolean;
  conflicts: Conflict[];
  changes: PlannedChange[];
  /** DNS records to publish for custom domains added by this apply. */
  verifications: { tenant: string; hostname: string; type: "dns-txt"; name: string; value: string }[];
}

export type ApplyResult =
  | { code: "invalid"; issues: string[] }
  | { code: "conflicts"; conflicts: Conflict[]; report: ApplyReport }
  | { code: "ok"; report: ApplyReport };

export interface ApplyDeps {
  db: Db;
  publisher: Publisher;
  config: PlatformNames;
  now?: () => Date;
}

class Rollback extends Error {
  readonly conflicts: Conflict[];
  constructor(conflicts: Conflict[]) {
    super("apply rolled back");
    this.conflicts = conflicts;
  }
}

export async function loadLiveState(db: Executor): Promise<LiveState> {
  const ts = await db.select({ id: tenants.id, slug: tenants.slug, name: tenants.name, plan: tenants.plan }).from(tenants);
  const slugOf = new Map(ts.map((t) => [t.id, t.slug]));
  const hs = await db
    .select({ hostname: hostnames.hostname, tenantId: hostnames.tenantId, kind: hostnames.kind, status: hostnames.status })
    .from(hostnames);
  const bs = await db
    .select({ tenantId: databaseBindings.tenantId, server: databaseServers.address, database: databaseBindings.database })
    .from(databaseBindings)
    .innerJoin(databaseServers, eq(databaseServers.id, databaseBindings.serverId));
  const us = await db.select({ tenantId: upstreams.tenantId, url: upstreams.url }).from(upstreams).orderBy(upstreams.position);
  const byTenant = new Map<string, string[]>();
  for (const u of us) byTenant.set(u.tenantId, [...(byTenant.get(u.tenantId) ?? []), u.url]);
  return {
    tenants: ts,
    hosts: hs.map((h) => ({
      hostname: h.hostname,
      tenantSlug: slugOf.get(h.tenantId) ?? h.tenantId,
      kind: h.kind,
      status: h.status,
    })),
    bindings: bs.map((b) => ({ tenantSlug: slugOf.get(b.tenantId) ?? b.tenantId, server: b.server, database: b.database })),
    upstreams: [...byTenant].map(([id, urls]) => ({ tenantSlug: slugOf.get(id) ?? id, urls })),
  };
}

/** What a tenant looked like before an apply, for its admin_changes row. */
function summary(live: LiveState, slug: string) {
  const t = live.tenants.find((x) => x.slug === slug);
  if (!t) return null;
  return {
    name: t.name,
    plan: t.plan,
    hostnames: live.hosts.filter((h) => h.tenantSlug === slug && h.kind === "custom").map((h) => h.hostname),
    database: live.bindings.find((b) => b.tenantSlug === slug) ?? null,
    upstreams: live.upstreams.find((u) => u.tenantSlug === slug)?.urls ?? [],
  };
}

export class ApplyService {
  readonly #deps: ApplyDeps;
  readonly #now: () => Date;

  constructor(deps: ApplyDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? (() => new Date());
  }

  async apply(request: ApplyRequest, context: { requestId: string; actor?: string }): Promise<ApplyResult> {
    const normalized = normalizeTenantFile(request, this.#deps.config);
    if (!normalized.ok) return { code: "invalid", issues: normalized.issues };
    const file = normalized.tenants;
    const report = (plan: { conflicts: Conflict[]; changes: PlannedChange[] }, applied: boolean): ApplyReport => ({
      dryRun: request.dryRun,
      applied,
      conflicts: plan.conflicts,
      changes: plan.changes,
      verifications: [],
    });

    if (request.dryRun) {
      const plan = planApply(file, await loadLiveState(this.#deps.db));
      const r = report(plan, false);
      return plan.conflicts.length > 0 ? { code: "conflicts", conflicts: plan.conflicts, report: r } : { code: "ok", report: r };
    }

    let outcome: { report: ApplyReport; publish: { tenants: string[]; hosts: string[]; keys: string[] } };
    try {
      outcome = await this.#deps.db.transaction(async (tx) => {
        // Look-alike claims racing an admin call wait here, then see each other (domains/hostnames.ts).
        await lockSkeletons(
          tx,
          file.flatMap((t) => (t.hostnames ?? []).map((h) => h.hostname)),
        );
        const live = await loadLiveState(tx);
        const plan = planApply(file, live);
        if (plan.conflicts.length > 0) throw new Rollback(plan.conflicts);
        const r = report(plan, true);
        const publish = await this.#write(tx, file, live, r, context);
        return { report: r, publish };
      });
    } catch (error) {
      if (error instanceof Rollback) {
        return {
          code: "conflicts",
          conflicts: error.conflicts,
          report: { ...report({ conflicts: error.conflicts, changes: [] }, false) },
        };
      }
      const constraint = uniqueViolation(error);
      if (!constraint) throw error;
      // A concurrent admin call won a name or a server between our check and our write.
      const conflicts: Conflict[] = [
        {
          kind: "concurrent_change",
          subject: constraint,
          owners: [],
          message: `a concurrent change took a name, slug or database server this file claims (constraint ${constraint}); nothing was applied, run the preflight again`,
        },
      ];
      return { code: "conflicts", conflicts, report: report({ conflicts, changes: [] }, false) };
    }
    await this.#deps.publisher.publish(outcome.publish);
    return { code: "ok", report: outcome.report };
  }

  async #write(
    tx: Executor,
    file: NormalizedTenant[],
    live: LiveState,
    report: ApplyReport,
    context: { requestId: string; actor?: string },
  ) {
    const { platformDomain } = this.#deps.config;
    const now = this.#now();
    const ids = new Map(live.tenants.map((t) => [t.slug, t.id]));
    const touched = new Set<string>();
    const hosts = new Set<string>();
    const rebound = new Set<string>();

    // 1. Tenants: create or update.
    for (const t of file) {
      const current = live.tenants.find((x) => x.slug === t.slug);
      if (!current) {
        const id = newId("tenant");
        ids.set(t.slug, id);
        const version = await nextVersion(tx);
        await tx.insert(tenants).values({ id, slug: t.slug, name: t.name, plan: t.plan ?? "free", version });
        const subdomain = `${t.slug}.${platformDomain}`;
        await insertPlatformHostname(tx, id, subdomain, version, now);
        hosts.add(subdomain);
      } else if (current.name !== t.name || (t.plan !== undefined && current.plan !== t.plan)) {
        await tx
          .update(tenants)
          .set({ name: t.name, plan: t.plan ?? current.plan, updatedAt: now })
          .where(eq(tenants.id, current.id));
      }
      touched.add(ids.get(t.slug)!);
    }

    // 2. Releases first (hostnames, then bindings), so names and servers can move between tenants of the file.
    for (const t of file) {
      const id = ids.get(t.slug)!;
      if (t.hostnames) {
        const want = new Set(t.hostnames.map((h) => h.hostname));
        const gone = live.hosts.filter((h) => h.tenantSlug === t.slug && h.kind === "custom" && !want.has(h.hostname));
        if (gone.length > 0) {
          await tx.delete(hostnames).where(
            and(
              eq(hostnames.tenantId, id),
              inArray(
                hostnames.hostname,
                gone.map((h) => h.hostname),
              ),
            ),
          );
          for (const h of gone) hosts.add(h.hostname);
        }
      }
      const b = live.bindings.find((x) => x.tenantSlug === t.slug);
      if (t.database && b && (b.server !== t.database.server || b.database !== t.database.database)) {
        const [row] = await tx.select().from(databaseBindings).where(eq(databaseBindings.tenantId, id));
        await tx.delete(databaseBindings).where(eq(databaseBindings.tenantId, id));
        if (row && b.server !== t.database.server) await tx.delete(databaseServers).where(eq(databaseServers.id, row.serverId));
      }
    }

    // 3. Claims.
    for (const t of file) {
      const id = ids.get(t.slug)!;
      if (t.hostnames) {
        const have = new Set(live.hosts.filter((h) => h.tenantSlug === t.slug).map((h) => h.hostname));
        for (const hostname of new Set(t.hostnames.map((h) => h.hostname))) {
          if (have.has(hostname)) continue;
          const token = randomBytes(20).toString("hex");
          await tx.insert(hostnames).values({
            id: newId("hostname"),
            tenantId: id,
            hostname,
            kind: "custom",
            status: "pending",
            verificationToken: token,
            skeleton: confusableSkeleton(hostname),
            version: await nextVersion(tx),
          });
          hosts.add(hostname);
          report.verifications.push({
            tenant: t.slug,
            hostname,
            type: "dns-txt",
            name: verificationName(hostname),
            value: verificationValue(token),
          });
        }
      }
      const b = live.bindings.find((x) => x.tenantSlug === t.slug);
      if (t.database && (!b || b.server !== t.database.server || b.database !== t.database.database)) {
        const [existing] = await tx.select().from(databaseServers).where(eq(databaseServers.address, t.database.server));
        let serverId = existing?.id;
        if (!serverId) {
          serverId = newId("server");
          await tx.insert(databaseServers).values({ id: serverId, address: t.database.server });
        }
        await tx
          .insert(databaseBindings)
          .values({ tenantId: id, serverId, database: t.database.database })
          .onConflictDoUpdate({ target: databaseBindings.tenantId, set: { serverId, database: t.database.database } });
        rebound.add(id);
      }
      if (t.upstreams) {
        await tx.delete(upstreams).where(eq(upstreams.tenantId, id));
        await tx
          .insert(upstreams)
          .values(t.upstreams.map((url, position) => ({ id: newId("upstream"), tenantId: id, url, position })));
      }
    }

    // 4. One new routing version per tenant, after all its writes; one admin_changes row per tenant changed.
    for (const t of file) {
      const id = ids.get(t.slug)!;
      const mine = report.changes.filter((c) => c.tenant === t.slug);
      if (mine.length === 0) continue;
      await tx
        .update(tenants)
        .set({ version: await nextVersion(tx), updatedAt: now })
        .where(eq(tenants.id, id));
      await tx.insert(adminChanges).values({
        time: now,
        actor: context.actor ?? "admin",
        requestId: context.requestId,
        action: "apply",
        tenantId: id,
        target: t.slug,
        before: summary(live, t.slug),
        after: { changes: mine },
      });
    }

    const keys =
      rebound.size > 0
        ? (
            await tx
              .select({ h: apiKeys.hash })
              .from(apiKeys)
              .where(inArray(apiKeys.tenantId, [...rebound]))
          ).map((k) => k.h)
        : [];
    return { tenants: [...touched], hosts: [...hosts], keys };
  }
}
