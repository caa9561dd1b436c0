/**
 * Usage per tenant and month: the control plane takes what routers metered from the
 * shared store's pending hash (atomically read and deleted, so no count is taken
 * twice) and adds it to the `usage` table in one statement. If the database write
 * fails, the counts go back into the store for the next collection; if the store
 * fails too, this process keeps them and adds them to its next collection. Collected
 * on a timer, before every usage answer, and on close.
 */
import { and, eq, inArray, sql } from "drizzle-orm";
import type { Hono } from "hono";
import { LIMIT_KEYS, periodOf, type Store } from "@portcullis/shared";
import type { Logger } from "pino";
import { adminError } from "../admin/errors.ts";
import type { Db } from "../db/client.ts";
import { tenants, usage } from "../db/schema/index.ts";

export interface UsageView {
  period: string;
  requests: number;
  refused: number;
  bytesIn: number;
  bytesOut: number;
}

const FIELD = { r: "requests", x: "refused", i: "bytesIn", o: "bytesOut" } as const;

export class UsageCollector {
  readonly #db: Db;
  readonly #store: Store;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #timer: NodeJS.Timeout;
  #running: Promise<void> = Promise.resolve();
  /** Counts taken from the store that neither Postgres nor the store has now. */
  #held: Record<string, number> = {};

  constructor(deps: { db: Db; store: Store; log: Logger; intervalMs?: number; now?: () => number }) {
    this.#db = deps.db;
    this.#store = deps.store;
    this.#log = deps.log;
    this.#now = deps.now ?? Date.now;
    this.#timer = setInterval(() => void this.collect().catch(() => {}), deps.intervalMs ?? 5_000);
    this.#timer.unref();
  }

  /** Move pending counts from the store into Postgres (serialized). */
  collect(): Promise<void> {
    this.#running = this.#running.catch(() => {}).then(() => this.#collect());
    return this.#running;
  }

  async #collect(): Promise<void> {
    const pending = this.#held;
    this.#held = {};
    try {
      for (const [field, n] of Object.entries(await this.#store.takeCounters(LIMIT_KEYS.usagePending))) {
        pending[field] = (pending[field] ?? 0) + n;
      }
    } catch (error) {
      // The store is down: what is held is kept for the next collection, which may reach the store.
      this.#hold(pending);
      throw error;
    }
    const rows = new Map<string, UsageView & { tenantId: string }>();
    for (const field in pending) {
      const [period, tenantId, metric] = field.split("|") as [string, string, keyof typeof FIELD];
      const n = pending[field] as number;
      if (!tenantId || !(metric in FIELD) || !Number.isFinite(n)) continue;
      const key = `${period}|${tenantId}`;
      let row = rows.get(key);
      if (!row) {
        row = { tenantId, period, requests: 0, refused: 0, bytesIn: 0, bytesOut: 0 };
        rows.set(key, row);
      }
      row[FIELD[metric]] += n;
    }
    if (rows.size === 0) return;
    try {
      const ids = [...new Set([...rows.values()].map((r) => r.tenantId))];
      // Counts of tenants deleted meanwhile have nowhere to go (and no one to bill).
      const live = new Set(
        (await this.#db.select({ id: tenants.id }).from(tenants).where(inArray(tenants.id, ids))).map((t) => t.id),
      );
      const values = [...rows.values()].filter((r) => live.has(r.tenantId)).map((r) => ({ ...r, updatedAt: new Date() }));
      if (values.length === 0) return;
      await this.#db
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
    } catch (error) {
      this.#log.warn({ err: error }, "persisting usage failed; counts returned to the store");
      await this.#store.addCounters(LIMIT_KEYS.usagePending, pending).catch((storeError) => {
        // Neither has them: kept here (bounded by tenants × months × 4 fields) until one does.
        this.#log.warn({ err: storeError }, "returning usage counts to the store failed; kept in memory");
        this.#hold(pending);
      });
      throw error;
    }
  }

  #hold(counts: Record<string, number>): void {
    for (const [field, n] of Object.entries(counts)) this.#held[field] = (this.#held[field] ?? 0) + n;
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
  app.get("/v1/tenants/:tenant/usage", async (c) => {
    const tenant = await deps.findTenant(c.req.param("tenant"));
    if (!tenant) return adminError(c, "not_found");
    return c.json(await deps.collector.current(tenant.id));
  });
}
