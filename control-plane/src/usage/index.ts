/**
 * Usage per tenant and month, counted exactly once however collections fail or
 * processes die. Routers add to the store's pending hash; a collection
 *
 * 1. claims it: the hash is renamed to the collecting batch (atomic, so no increment
 *    lands in between) and given a name — or, when an earlier collection left a batch
 *    there (Postgres failed, or its process died), that batch is taken up again;
 * 2. applies it: one transaction records the batch's name in `usage_batches` and adds
 *    its counts to `usage`, or does nothing when the name is already there;
 * 3. drops the batch from the store, if it is still the one it claimed.
 *
 * A failure at any step leaves the counts in the store or in Postgres, never in
 * neither and never in both twice. With several control planes the timer runs on
 * the holder of the "usage.collect" lease; usage reads collect first on any of them.
 * Collected on a timer, before every usage answer, and on close.
 */
import { and, eq, inArray, lt, sql } from "drizzle-orm";
import { randomUUID } from "node:crypto";
import type { Hono } from "hono";
import { LEGACY_LIMIT_KEYS, LIMIT_KEYS, periodOf, type Store } from "@portcullis/shared";
import type { Logger } from "pino";
import { adminError } from "../admin/errors.ts";
import { OPERATIONS as OP, route } from "../admin/operations.ts";
import type { Db } from "../db/client.ts";
import { tenants, usage, usageBatches } from "../db/schema/index.ts";

export interface UsageView {
  period: string;
  requests: number;
  refused: number;
  bytesIn: number;
  bytesOut: number;
}

/** Rows per statement when a collection is applied (7 parameters each). */
const USAGE_SLICE = 1_000;

const FIELD = { r: "requests", x: "refused", i: "bytesIn", o: "bytesOut" } as const;

export class UsageCollector {
  readonly #db: Db;
  readonly #store: Store;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #timer: NodeJS.Timeout;
  #running: Promise<void> = Promise.resolve();

  constructor(deps: {
    db: Db;
    store: Store;
    log: Logger;
    intervalMs?: number;
    now?: () => number;
    /** With several control planes: the timer collects only while this process holds the lease (reads always collect). */
    lease?: { readonly held: boolean };
  }) {
    this.#db = deps.db;
    this.#store = deps.store;
    this.#log = deps.log;
    this.#now = deps.now ?? Date.now;
    const lease = deps.lease;
    this.#timer = setInterval(() => {
      if (lease !== undefined && !lease.held) return;
      void this.collect().catch(() => {});
    }, deps.intervalMs ?? 5_000);
    this.#timer.unref();
  }

  /** Move pending counts from the store into Postgres (serialized). */
  collect(): Promise<void> {
    this.#running = this.#running.catch(() => {}).then(() => this.#collect());
    return this.#running;
  }

  async #collect(): Promise<void> {
    await this.#collectFrom(LIMIT_KEYS.usagePending, LIMIT_KEYS.usageCollecting);
    // Counts routers of an earlier release add under the old names (during a rolling
    // upgrade on one Redis; a cluster never had them).
    if (!this.#store.sharded) await this.#collectFrom(LEGACY_LIMIT_KEYS.usagePending, LEGACY_LIMIT_KEYS.usageCollecting);
  }

  async #collectFrom(pending: string, collecting: string): Promise<void> {
    // Claimed, not taken: the counts stay in the store (as this collection's batch)
    // until Postgres has them, so a collector that dies anywhere loses nothing; the
    // next collection, in any process, finishes that batch first.
    const claimed = await this.#store.claimCounters(pending, collecting, randomUUID());
    if (claimed === null) return;
    const rows = new Map<string, UsageView & { tenantId: string }>();
    for (const field in claimed.counters) {
      const [period, tenantId, metric] = field.split("|") as [string, string, keyof typeof FIELD];
      const n = claimed.counters[field] as number;
      if (!tenantId || !(metric in FIELD) || !Number.isFinite(n)) continue;
      const key = `${period}|${tenantId}`;
      let row = rows.get(key);
      if (!row) {
        row = { tenantId, period, requests: 0, refused: 0, bytesIn: 0, bytesOut: 0 };
        rows.set(key, row);
      }
      row[FIELD[metric]] += n;
    }
    try {
      await this.#db.transaction(async (tx) => {
        // Applied once: the batch's name goes in with its counts.
        const fresh = await tx
          .insert(usageBatches)
          .values({ id: claimed.batch })
          .onConflictDoNothing()
          .returning({ id: usageBatches.id });
        if (fresh.length === 0) return;
        await tx.delete(usageBatches).where(lt(usageBatches.appliedAt, sql`now() - interval '1 day'`));
        if (rows.size === 0) return;
        // In slices: a collection may hold every tenant's counts, and one statement
        // takes at most 65,535 parameters.
        const all = [...rows.values()];
        for (let i = 0; i < all.length; i += USAGE_SLICE) {
          const slice = all.slice(i, i + USAGE_SLICE);
          const ids = [...new Set(slice.map((r) => r.tenantId))];
          // Counts of tenants deleted meanwhile have nowhere to go (and no one to bill).
          const live = new Set(
            (await tx.select({ id: tenants.id }).from(tenants).where(inArray(tenants.id, ids))).map((t) => t.id),
          );
          const values = slice.filter((r) => live.has(r.tenantId)).map((r) => ({ ...r, updatedAt: new Date() }));
          if (values.length === 0) continue;
          await tx
            .insert(usage)
            .values(values)
            .onConflictDoUpdate({
              target: [usage.tenantId, usage.period],
              set: {
                requests: sql`${usage.requests} + excluded.requests`,
                refused: sql`${usage.refused} + excluded.refused`,
                bytesIn: sql`${usage.bytesIn} + excluded.bytes_in`,
                bytesOut: sql`${usage.bytesOut} + excluded.bytes_out`,
                updatedAt: sql`excluded.updated_at`,
              },
            });
        }
      });
    } catch (error) {
      // The error's message and code only: a failed statement carries every parameter.
      const e = error as { message?: string; cause?: { code?: string; message?: string } };
      this.#log.warn(
        {
          error: (e.cause?.message ?? e.message ?? "").slice(0, 300),
          code: e.cause?.code,
          batch: claimed.batch,
          rows: rows.size,
        },
        "persisting usage failed; the batch stays in the store for the next collection",
      );
      throw error;
    }
    // Gone from the store only once applied. If this fails, the next collection finds
    // the batch, sees its name applied, and drops it.
    await this.#store.releaseCounters(collecting, claimed.batch);
  }

  /** The tenant's usage in the current month, after collecting what is pending. */
  async current(tenantId: string): Promise<UsageView> {
    await this.collect().catch(() => {
      // Answer with what Postgres holds; the pending counts stay for the next collection.
    });
    const period = periodOf(this.#now());
    const [row] = await this.#db
      .select()
      .from(usage)
      .where(and(eq(usage.tenantId, tenantId), eq(usage.period, period)));
    return {
      period,
      requests: row?.requests ?? 0,
      refused: row?.refused ?? 0,
      bytesIn: row?.bytesIn ?? 0,
      bytesOut: row?.bytesOut ?? 0,
    };
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.collect().catch(() => {});
  }
}

/** `GET /v1/tenants/:tenant/usage` (contract: Admin API), behind the admin API's auth. */
export function mountUsageRoutes(
  app: Hono<{ Variables: { requestId: string } }>,
  deps: { collector: UsageCollector; findTenant: (ref: string) => Promise<{ id: string } | null> },
): void {
  route(app, OP.usage, async (c) => {
    const tenant = await deps.findTenant(c.req.param("tenant"));
    if (!tenant) return adminError(c, "not_found");
    return c.json(await deps.collector.current(tenant.id));
  });
}
