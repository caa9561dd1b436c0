/**
 * Sparse traffic admitted ahead of the store's count (router/src/limits/ahead.ts),
 * against a real Redis and the in-process store: a set seen every few seconds is
 * admitted without waiting for the store and charged to it shortly after, exactly
 * once; a charge the store refuses is a request passed beyond the limit, after which
 * the set is refused locally and not admitted ahead again; steady traffic, small
 * buckets and sets with little room left wait for the store as before.
 */
import { afterAll, describe, expect, it } from "vitest";
import { LIMIT_KEYS, type Store, type TenantRecord } from "@portcullis/shared";
import { HEADROOM_MS, type LimitOutcome, Limiter, PREFETCH_GAP_MS } from "@portcullis/router";
import { countingStore, slowTenant } from "../helpers/limits.ts";
import { storeFactories } from "../helpers/redis.ts";

const { factories, closeAll } = storeFactories();
let seq = 0;
afterAll(closeAll);

const isSync = (r: LimitOutcome | Promise<LimitOutcome>): r is LimitOutcome => !(r instanceof Promise);
const decide = async (r: LimitOutcome | Promise<LimitOutcome>) => (r instanceof Promise ? await r : r).ok;

/** Admits through a fresh limiter until refused: what the store has left. */
async function drain(store: Store, t: TenantRecord, now: () => number, max = 1_000): Promise<number> {
  const l = new Limiter({ store, now });
  let n = 0;
  for (let i = 0; i < max; i++) {
    if (!(await decide(l.check(t, undefined)))) break;
    n++;
  }
  await l.close();
  return n;
}

for (const [kind, make] of Object.entries(factories)) {
  describe(`${kind} store: sparse traffic admitted ahead`, () => {
    it("admits a sparse set's request without waiting, and charges it to the store once", async () => {
      const { store, calls } = countingStore(await make());
      let now = 1_000_000;
      const a = new Limiter({ store, now: () => now });
      const t = slowTenant(100);
      const first = a.check(t, undefined);
      expect(isSync(first)).toBe(false); // nothing known yet: the store decides
      expect(await decide(first)).toBe(true);
      for (let i = 0; i < 5; i++) {
        now += PREFETCH_GAP_MS;
        const r = a.check(t, undefined);
        expect(isSync(r) && r.ok, `request ${i}`).toBe(true);
        // Its headers name the tenant's bucket, as a leased request's do.
        expect((r as LimitOutcome & { headers: Record<string, string> }).headers["ratelimit-policy"]).toBe(
          '"tenant";q=100;w=60000',
        );
        expect(a.owed(t.id)).toBe(1);
        await a.settled(); // the charge goes to the store
        expect(a.owed(t.id)).toBe(0);
      }
      expect(calls.admit).toBe(6);
      expect(calls.wants).toEqual([1, 1, 1, 1, 1, 1]);
      await a.close();
      // Six counted, no more, no fewer.
      expect(await drain(store, t, () => now)).toBe(94);
    });

    it("a refused charge passed one request beyond the limit; the set is then refused locally, not admitted ahead", async () => {
      const { store, calls } = countingStore(await make());
      let now = 1_000_000;
      const a = new Limiter({ store, now: () => now });
      const t = slowTenant(40);
      expect(await decide(a.check(t, undefined))).toBe(true); // a's view: 39 left
      // Another router takes the rest meanwhile.
      expect(await drain(store, t, () => now)).toBe(39);
      now += PREFETCH_GAP_MS;
      const ahead = a.check(t, undefined);
      expect(isSync(ahead) && ahead.ok).toBe(true); // a's view was stale: over the limit by one
      await a.settled();
      const before = calls.admit;
      for (let i = 0; i < 3; i++) {
        now += PREFETCH_GAP_MS;
        const r = a.check(t, undefined);
        expect(isSync(r) && !r.ok, `refused locally ${i}`).toBe(true);
        expect(a.owed(t.id)).toBe(0);
      }
      expect(calls.admit).toBe(before);
      // The charge went to the store forced, through the batch: the bucket counted the
      // request that passed and owes it (the next one waits two intervals, not one).
      expect(calls.forced).toBe(1);
      const next = await store.admit([{ key: LIMIT_KEYS.tenantRate(t.id), emissionIntervalMs: 600_000, burst: 40 }], null, 1);
      expect(!next.ok && next.code === "rate" && next.retryAfterMs).toBeGreaterThan(1.5 * 600_000);
      await a.close();
    });

    it("waits for the store for steady traffic, small buckets, little room left, or an old answer", async () => {
      const { store } = countingStore(await make());
      let now = 1_000_000;
      const a = new Limiter({ store, now: () => now });

      // Steady: requests closer than PREFETCH_GAP_MS never go ahead.
      const steady = slowTenant(100);
      for (let i = 0; i < 30; i++) {
        now += 10;
        const r = a.check(steady, undefined);
        if (isSync(r)) expect(a.owed(steady.id)).toBe(0);
        expect(await decide(r)).toBe(true);
      }

      // Small bucket (burst under 20: leases of one): exact, a round trip each.
      const small = slowTenant(19);
      expect(await decide(a.check(small, undefined))).toBe(true);
      now += PREFETCH_GAP_MS;
      expect(isSync(a.check(small, undefined))).toBe(false);

      // Little room: the store's last answer left under half the burst.
      const low = slowTenant(40);
      expect(await drain(store, low, () => now, 25)).toBe(25);
      expect(await decide(a.check(low, undefined))).toBe(true); // 14 left < 20
      now += PREFETCH_GAP_MS;
      expect(isSync(a.check(low, undefined))).toBe(false);

      // An answer older than HEADROOM_MS says nothing.
      const old = slowTenant(100);
      expect(await decide(a.check(old, undefined))).toBe(true);
      now += HEADROOM_MS + 1;
      expect(isSync(a.check(old, undefined))).toBe(false);

      // The quota binds too: a two-hundredth of it must be left.
      const quota = slowTenant(1, 4_000); // maxLease 4: 20 must be left
      quota.limits = { ...quota.limits, requestsPerSecond: null, burst: null };
      const q = new Limiter({ store, now: () => now });
      let used = 0;
      for (let i = 0; i < 3_981; i++) {
        now += 1;
        if (await decide(q.check(quota, undefined))) used++;
        if (used === 3_981) break;
      }
      await q.close();
      expect(await decide(a.check(quota, undefined))).toBe(true); // 18 left in the month
      now += PREFETCH_GAP_MS;
      expect(isSync(a.check(quota, undefined))).toBe(false);
      await a.settled();
      await a.close();
    });

    it("a tenant's keys share one owed request per router, and a refusal for any stops the others going ahead", async () => {
      const { store } = countingStore(await make());
      let now = 1_000_000;
      const a = new Limiter({ store, now: () => now });
      const t = slowTenant(100);
      const keys = ["key_1", "key_2", "key_3", "key_4", "key_5"];
      // Each key learns, on router a, that the tenant's bucket is nearly full.
      for (const k of keys) expect(await decide(a.check(t, k))).toBe(true);
      // The rest of the bucket goes through another router.
      expect(await drain(store, t, () => now)).toBe(95);
      now += PREFETCH_GAP_MS;
      // Five keys at once, each with a view of plenty: one goes ahead, the others ask.
      const first = keys.map((k) => a.check(t, k));
      expect(first.filter(isSync)).toHaveLength(1);
      const answers = await Promise.all(first.map(decide));
      expect(answers.filter(Boolean)).toHaveLength(1); // the one ahead: over by one
      await a.settled();
      // Every key's view predates the refusal now: none goes ahead again.
      now += PREFETCH_GAP_MS;
      for (const k of keys) {
        const r = a.check(t, k);
        expect(isSync(r) && r.ok, k).toBe(false);
        expect(await decide(r)).toBe(false);
      }
      await a.close();
    });

    it("a forced charge is counted where it does not fit: the quota past its limit, the bucket into its future", async () => {
      const store = await make();
      const id = `forced${seq++}`;
      const quota = { key: `q:${id}`, limit: 2, ttlMs: 60_000 };
      const rate = { key: `r:${id}`, emissionIntervalMs: 600_000, burst: 2 };
      expect(await store.admit([rate], quota, 2)).toMatchObject({ ok: true, granted: 2 });
      // Two already admitted; a third passed ahead and is charged: refused, yet counted.
      const forced = await store.admit([rate], quota, 1, true);
      expect(forced).toMatchObject({ ok: false, code: "rate" });
      // Its wait counts what it consumed: two intervals.
      expect(!forced.ok && forced.code === "rate" && forced.retryAfterMs).toBeGreaterThan(1.5 * 600_000);
      expect(await store.admit([], quota, 1)).toMatchObject({ ok: false, code: "quota", used: 3 });
      // The bucket owes it too: the next request waits two intervals, not one.
      const next = await store.admit([rate], null, 1);
      expect(next.ok).toBe(false);
      expect(!next.ok && next.code === "rate" && next.retryAfterMs).toBeGreaterThan(1.5 * 600_000);
    });

    it("goes ahead on what it knows of a quiet set for HEADROOM_MS, and not on an older answer", async () => {
      const { store } = countingStore(await make());
      let now = 1_000_000;
      const a = new Limiter({ store, now: () => now });
      const t = slowTenant(100);
      expect(await decide(a.check(t, undefined))).toBe(true);
      now += HEADROOM_MS - 1_000;
      a.sweep();
      const kept = a.check(t, undefined);
      expect(isSync(kept) && kept.ok).toBe(true);
      await a.settled();
      now += HEADROOM_MS + 1;
      a.sweep();
      expect(isSync(a.check(t, undefined))).toBe(false);
      await a.close();
    });

    it("one owed request per set at a time: concurrent sparse requests wait for the store", async () => {
      const { store } = countingStore(await make());
      let now = 1_000_000;
      const a = new Limiter({ store, now: () => now });
      const t = slowTenant(100);
      expect(await decide(a.check(t, undefined))).toBe(true);
      now += PREFETCH_GAP_MS;
      const answers = Array.from({ length: 5 }, () => a.check(t, undefined));
      expect(answers.filter(isSync)).toHaveLength(1);
      expect(a.owed(t.id)).toBe(1);
      expect((await Promise.all(answers.map(decide))).every(Boolean)).toBe(true);
      await a.close();
      expect(await drain(store, t, () => now)).toBe(94);
    });
  });
}
