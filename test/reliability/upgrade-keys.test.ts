/**
 * Counts kept under the Redis key names of an earlier release (before hash tags,
 * LEGACY_LIMIT_KEYS) survive an upgrade on one Redis (real Redis, real Postgres): a
 * tenant's monthly quota counter is carried over by the first admit that finds none
 * under the new name, and usage added under the old name (by a router not yet
 * upgraded) is still collected, once. A cluster never had the old names.
 */
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LEGACY_LIMIT_KEYS, LIMIT_KEYS, periodOf } from "@portcullis/shared";
import { sql } from "drizzle-orm";
import { UsageCollector } from "@portcullis/control-plane";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { createTestStore, deleteKeys, testRedisClient } from "../helpers/redis.ts";

describe("limit and usage counts across the key rename of an upgrade", () => {
  let testDb: TestDatabase;
  let store: Awaited<ReturnType<typeof createTestStore>>;
  const period = periodOf(Date.now());
  const tenantId = "tnt_upgrade_keys";

  beforeAll(async () => {
    testDb = await createTestDatabase();
    store = await createTestStore();
    await testDb.database.db.execute(sql`insert into tenants (id, slug, name, version)
        values (${tenantId}, 'upgrade-keys', 'Upgrade keys', nextval('routing_version_seq'))`);
  });
  afterAll(async () => {
    await store?.close();
    if (store) await deleteKeys(store.prefix);
    await testDb?.drop();
  });

  it("carries a quota counter over from its old name, once, with an expiry", async () => {
    const redis = testRedisClient();
    try {
      const legacy = LEGACY_LIMIT_KEYS.quota(tenantId, period);
      await redis.set(`${store.prefix}${legacy}`, "7");
      const quota = { key: LIMIT_KEYS.quota(tenantId, period), legacyKey: legacy, limit: 10, ttlMs: 3_600_000 };
      // 7 used before the upgrade: 3 left of 10.
      expect(await store.admit([], quota, 5)).toMatchObject({ ok: true, granted: 3, used: 10 });
      expect(await store.admit([], quota)).toEqual({ ok: false, code: "quota", used: 10 });
      expect(await redis.exists(`${store.prefix}${legacy}`)).toBe(0);
      expect(await redis.pttl(`${store.prefix}${quota.key}`)).toBeGreaterThan(0);
      // Through admitMany too, for another tenant's counter.
      const other = LEGACY_LIMIT_KEYS.quota("tnt_other", period);
      await redis.set(`${store.prefix}${other}`, "9");
      const [answer] =
        (await store.admitMany?.([
          {
            rates: [],
            quota: { key: LIMIT_KEYS.quota("tnt_other", period), legacyKey: other, limit: 10, ttlMs: 60_000 },
            want: 4,
          },
        ])) ?? [];
      expect(answer).toMatchObject({ ok: true, granted: 1, used: 10 });
    } finally {
      redis.disconnect();
    }
  });

  it("collects usage added under the old name as well as under the new one, each count once", async () => {
    const field = `${period}|${tenantId}|r`;
    await store.addCounters(LEGACY_LIMIT_KEYS.usagePending, { [field]: 4 });
    await store.addCounters(LIMIT_KEYS.usagePending, { [field]: 5 });
    const collector = new UsageCollector({
      db: testDb.database.db,
      store,
      log: pino({ level: "silent" }),
      intervalMs: 3_600_000,
    });
    await collector.collect();
    await collector.collect();
    expect((await collector.current(tenantId)).requests).toBe(9);
    expect(await store.takeCounters(LEGACY_LIMIT_KEYS.usagePending)).toEqual({});
  });
});
