/** The stores' limit and usage primitives keep one contract: Redis over a real socket, and in-process. */
import { afterAll, describe, expect, it } from "vitest";
import { storeFactories, testRedisClient } from "../helpers/redis.ts";

const { factories, closeAll } = storeFactories();
afterAll(closeAll);

// A slow refill (one request a minute) so the test's own duration cannot add requests.
// Keys of one admit share a hash tag (one Redis Cluster slot), as a tenant's keys do.
const slow = (key: string, burst: number, tag = "t") => ({ key: `{${tag}}:${key}`, emissionIntervalMs: 60_000, burst });

for (const [kind, make] of Object.entries(factories)) {
  describe(`${kind} store: admit, counters`, () => {
    it("admit allows a burst, then refuses with a retry time, and reports what is left", async () => {
      const store = await make();
      const answers = [];
      for (let i = 0; i < 5; i++) answers.push(await store.admit([slow("b1", 3)], null));
      expect(answers.map((a) => a.ok)).toEqual([true, true, true, false, false]);
      const first = answers[0];
      expect(first?.ok && first.remaining).toBe(2);
      const third = answers[2];
      expect(third?.ok && third.remaining).toBe(0);
      const refused = answers[3];
      expect(refused?.ok === false && refused.code).toBe("rate");
      if (refused && !refused.ok && refused.code === "rate") {
        expect(refused.retryAfterMs).toBeGreaterThan(50_000);
        expect(refused.retryAfterMs).toBeLessThanOrEqual(60_000);
      }
    });

    it("admit consumes nothing when any bucket refuses (all or nothing)", async () => {
      const store = await make();
      // Fill bucket "k" alone, then ask for "t" and "k" together: "t" must stay untouched.
      expect((await store.admit([slow("k", 1)], null)).ok).toBe(true);
      for (let i = 0; i < 3; i++) expect((await store.admit([slow("t", 2), slow("k", 1)], null)).ok).toBe(false);
      expect((await store.admit([slow("t", 2)], null)).ok).toBe(true);
      expect((await store.admit([slow("t", 2)], null)).ok).toBe(true);
      expect((await store.admit([slow("t", 2)], null)).ok).toBe(false);
    });

    it("admit counts the quota only for admitted requests and refuses at the limit", async () => {
      const store = await make();
      const quota = { key: "{t}:q", limit: 3, ttlMs: 60_000 };
      const used: number[] = [];
      for (let i = 0; i < 3; i++) {
        const a = await store.admit([], quota);
        expect(a.ok).toBe(true);
        if (a.ok) used.push(a.used);
      }
      expect(used).toEqual([1, 2, 3]);
      const over = await store.admit([], quota);
      expect(over).toEqual({ ok: false, code: "quota", used: 3 });
      // A rate refusal does not use quota.
      const quota2 = { key: "{t}:q2", limit: 10, ttlMs: 60_000 };
      expect((await store.admit([slow("r", 1)], quota2)).ok).toBe(true);
      expect((await store.admit([slow("r", 1)], quota2)).ok).toBe(false);
      const after = await store.admit([], quota2);
      expect(after.ok && after.used).toBe(2);
    });

    it("admit with want grants the least room of the buckets and consumes exactly that", async () => {
      const store = await make();
      const a = await store.admit([slow("w", 5)], null, 3);
      expect(a).toMatchObject({ ok: true, granted: 3, remaining: 2, bucket: 0 });
      const b = await store.admit([slow("w", 5)], null, 3);
      expect(b).toMatchObject({ ok: true, granted: 2, remaining: 0 });
      const c = await store.admit([slow("w", 5)], null, 3);
      expect(c.ok === false && c.code).toBe("rate");
      // Two buckets: the tighter one bounds the grant, is named, and both consume it.
      const d = await store.admit([slow("w2", 10), slow("w3", 4)], null, 6);
      expect(d).toMatchObject({ ok: true, granted: 4, remaining: 0, bucket: 1 });
      const e = await store.admit([slow("w2", 10)], null, 10);
      expect(e).toMatchObject({ ok: true, granted: 6, remaining: 0 });
      // The default is one request, as before.
      expect(await store.admit([slow("w4", 2)], null)).toMatchObject({ ok: true, granted: 1, remaining: 1 });
    });

    it("admit with want counts the granted requests against the quota and stops at its limit", async () => {
      const store = await make();
      const quota = { key: "{t}:qw", limit: 5, ttlMs: 60_000 };
      expect(await store.admit([], quota, 3)).toMatchObject({ ok: true, granted: 3, used: 3 });
      expect(await store.admit([slow("qr", 100)], quota, 3)).toMatchObject({ ok: true, granted: 2, used: 5, remaining: 98 });
      expect(await store.admit([], quota, 3)).toEqual({ ok: false, code: "quota", used: 5 });
      // A quota refusal consumed nothing from the bucket.
      expect(await store.admit([slow("qr", 100)], null, 1)).toMatchObject({ ok: true, remaining: 97 });
    });

    it("admitMany answers each admit as admit would, in order, sharing buckets and quotas between them", async () => {
      const store = await make();
      const quota = { key: "{t}:mq", limit: 4, ttlMs: 60_000 };
      const answers = await store.admitMany?.([
        { rates: [slow("m1", 5)], quota: null, want: 3 },
        // The same bucket again: sees the first admit's consumption.
        { rates: [slow("m1", 5)], quota: null, want: 3 },
        { rates: [slow("m1", 5)], quota: null },
        // Two buckets and a quota; the tighter bucket bounds the grant.
        { rates: [slow("m2", 10), slow("m3", 2)], quota, want: 6 },
        { rates: [], quota, want: 5 },
        { rates: [], quota },
        // No bucket, no quota: one request granted, as admit does.
        { rates: [], quota: null },
      ]);
      expect(answers).toHaveLength(7);
      expect(answers?.[0]).toMatchObject({ ok: true, granted: 3, remaining: 2 });
      expect(answers?.[1]).toMatchObject({ ok: true, granted: 2, remaining: 0 });
      expect(answers?.[2]).toMatchObject({ ok: false, code: "rate" });
      expect(answers?.[3]).toMatchObject({ ok: true, granted: 2, used: 2, bucket: 1 });
      expect(answers?.[4]).toMatchObject({ ok: true, granted: 2, used: 4 });
      expect(answers?.[5]).toEqual({ ok: false, code: "quota", used: 4 });
      expect(answers?.[6]).toMatchObject({ ok: true });
      // What they consumed is what single admits see afterwards.
      expect((await store.admit([slow("m1", 5)], null)).ok).toBe(false);
      expect(await store.admit([slow("m2", 10)], null, 10)).toMatchObject({ ok: true, granted: 8 });
      expect(await store.admitMany?.([])).toEqual([]);
    });

    it("admitMany keeps the order of admits of different tenants (on a cluster, different slots)", async () => {
      const store = await make();
      const tenants = ["a", "b", "c", "d", "e"];
      const calls = [0, 1, 2].flatMap(() => tenants.map((t) => ({ rates: [slow("r", 2, t)], quota: null })));
      const answers = await store.admitMany?.(calls);
      // Each tenant's bucket holds 2: its first two admits pass, its third is refused.
      expect(answers?.map((a) => a.ok)).toEqual([
        ...tenants.map(() => true),
        ...tenants.map(() => true),
        ...tenants.map(() => false),
      ]);
      for (const t of tenants) expect((await store.admit([slow("r", 2, t)], null)).ok).toBe(false);
      expect((await store.admit([slow("r", 2, "f")], null)).ok).toBe(true);
    });

    it("refund gives unused requests back to every bucket and the quota", async () => {
      const store = await make();
      const quota = { key: "{t}:qf", limit: 10, ttlMs: 60_000 };
      const rates = [slow("f1", 5), slow("f2", 8)];
      expect(await store.admit(rates, quota, 5)).toMatchObject({ ok: true, granted: 5, used: 5 });
      expect((await store.admit(rates, quota)).ok).toBe(false);
      await store.refund(rates, quota, 3);
      expect(await store.admit(rates, quota, 5)).toMatchObject({ ok: true, granted: 3, used: 5, remaining: 0 });
      expect((await store.admit(rates, quota)).ok).toBe(false);
    });

    it("refund never fills a bucket past its burst nor takes the quota below 0, and creates nothing", async () => {
      const store = await make();
      const quota = { key: "{t}:qz", limit: 10, ttlMs: 60_000 };
      expect(await store.admit([slow("z", 5)], quota, 2)).toMatchObject({ ok: true, granted: 2, used: 2 });
      await store.refund([slow("z", 5)], quota, 50);
      expect(await store.admit([slow("z", 5)], quota, 50)).toMatchObject({ ok: true, granted: 5, remaining: 0, used: 5 });
      if (kind === "redis") {
        // The quota counter keeps its expiry through a refund (it must not outlive its month).
        const redis = testRedisClient();
        const ttl = await redis.pttl(`${(store as { prefix?: string }).prefix}{t}:qz`);
        redis.disconnect();
        expect(ttl).toBeGreaterThan(0);
      }
      // Keys that do not exist stay absent: a later admit starts from a full bucket and 0 used.
      await store.refund([slow("none", 3)], { key: "{t}:qnone", limit: 10, ttlMs: 60_000 }, 4);
      expect(await store.admit([slow("none", 3)], { key: "{t}:qnone", limit: 10, ttlMs: 60_000 }, 10)).toMatchObject({
        ok: true,
        granted: 3,
        used: 3,
      });
    });

    it("addCounters adds, takeCounters reads and empties atomically", async () => {
      const store = await make();
      await store.addCounters("h", { a: 2, b: 5 });
      await store.addCounters("h", { a: 3, c: 1 });
      expect(await store.takeCounters("h")).toEqual({ a: 5, b: 5, c: 1 });
      expect(await store.takeCounters("h")).toEqual({});
    });

    it("no increment is lost or counted twice when adds and takes interleave", async () => {
      const store = await make();
      const adds = Array.from({ length: 200 }, () => store.addCounters("hh", { n: 1 }));
      const takes = Array.from({ length: 20 }, () => store.takeCounters("hh"));
      const [, parts] = await Promise.all([Promise.all(adds), Promise.all(takes)]);
      parts.push(await store.takeCounters("hh"));
      expect(parts.reduce((sum, p) => sum + (p.n ?? 0), 0)).toBe(200);
    });
  });
}
