/**
 * Usage is counted exactly once whatever step of a collection fails (real Redis,
 * real Postgres): a batch claimed and never applied (Postgres away, or the collector
 * died) is applied by the next collection; a batch applied and never dropped from the
 * store (the collector died after its commit) is dropped without being counted again.
 */
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LIMIT_KEYS, periodOf, type Store } from "@portcullis/shared";
import { sql } from "drizzle-orm";
import { UsageCollector } from "@portcullis/control-plane";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { createTestStore, deleteKeys } from "../helpers/redis.ts";

describe("usage collection, exactly once", () => {
  let testDb: TestDatabase;
  let store: Awaited<ReturnType<typeof createTestStore>>;
  let tenantId: string;
  const log = pino({ level: "silent" });
  const period = periodOf(Date.now());

  beforeAll(async () => {
    testDb = await createTestDatabase();
    store = await createTestStore();
    // A tenant row is all usage needs (its foreign key).
    tenantId = "tnt_usage_once";
    await testDb.database.db.execute(sql`insert into tenants (id, slug, name, version)
        values (${tenantId}, 'usage-once', 'Usage once', nextval('routing_version_seq'))`);
  });
  afterAll(async () => {
    await store?.close();
    if (store) await deleteKeys(store.prefix);
    await testDb?.drop();
  });

  const add = (n: number) => store.addCounters(LIMIT_KEYS.usagePending, { [`${period}|${tenantId}|r`]: n });

  function collector(s: Store = store) {
    return new UsageCollector({ db: testDb.database.db, store: s, log, intervalMs: 3_600_000 });
  }

  async function stored(): Promise<number> {
    return (await collector().current(tenantId)).requests;
  }

  it("a batch claimed by a collector that never applied it is applied by the next collection, once", async () => {
    await add(7);
    // A collector claims the batch and dies before its transaction.
    expect((await store.claimCounters(LIMIT_KEYS.usagePending, LIMIT_KEYS.usageCollecting, "dead-1"))?.counters).toEqual({
      [`${period}|${tenantId}|r`]: 7,
    });
    await add(3);
    const c = collector();
    await c.collect(); // the dead collector's batch
    await c.collect(); // what came after it
    expect(await stored()).toBe(10);
  });

  it("a batch applied by a collector that died before dropping it is dropped, not counted twice", async () => {
    const before = await stored();
    await add(5);
    // The store refuses the release once: as if the process died right after its commit.
    let refuse = true;
    const release = async (key: string, batch: string) => {
      if (refuse) {
        refuse = false;
        throw new Error("died after the commit");
      }
      return store.releaseCounters(key, batch);
    };
    const dying = new Proxy(store, {
      get(target, prop) {
        if (prop === "releaseCounters") return release;
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    }) as Store;
    await expect(collector(dying).collect()).rejects.toThrow("died after the commit");
    expect(await store.claimCounters(LIMIT_KEYS.usagePending, LIMIT_KEYS.usageCollecting, "probe")).not.toBeNull();
    await add(2);
    const c = collector();
    await c.collect(); // finds the applied batch: dropped
    await c.collect(); // then the 2
    expect(await stored()).toBe(before + 7);
  });

  it("applies one collection holding more tenants than one statement can name (12,000: 84,000 parameters)", async () => {
    const n = 12_000;
    await testDb.database.db.execute(sql`
      insert into tenants (id, slug, name, version)
      select 'tnt_many_' || i, 'many-' || i, 'Many ' || i, nextval('routing_version_seq') from generate_series(1, ${n}) as i`);
    const counts: Record<string, number> = {};
    for (let i = 1; i <= n; i++) counts[`${period}|tnt_many_${i}|r`] = 2;
    await store.addCounters(LIMIT_KEYS.usagePending, counts);
    await collector().collect();
    const [row] = (await testDb.database.db.execute(
      sql`select coalesce(sum(requests), 0)::int as total from usage where tenant_id like 'tnt_many_%'`,
    )) as unknown as { total: number }[];
    expect(row?.total).toBe(2 * n);
    expect(await store.claimCounters(LIMIT_KEYS.usagePending, LIMIT_KEYS.usageCollecting, "after")).toBeNull();
  });
});
