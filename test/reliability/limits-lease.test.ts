/**
 * Leased limits against a real store: two limiters sharing one store (two routers
 * sharing one Redis, and the in-process store) never admit more than the bucket and
 * quota hold, decide most requests without a store call, and give back what they
 * leased and did not use.
 */
import { afterAll, describe, expect, it } from "vitest";
import { type LimitOutcome, LEASE_MS, Limiter } from "@portcullis/router";
import { countingStore, slowTenant } from "../helpers/limits.ts";
import { storeFactories } from "../helpers/redis.ts";

const { factories, closeAll } = storeFactories();
afterAll(closeAll);

async function decide(r: LimitOutcome | Promise<LimitOutcome>): Promise<boolean> {
  return (r instanceof Promise ? await r : r).ok;
}

for (const [kind, make] of Object.entries(factories)) {
  describe(`${kind} store: leased limits`, () => {
    it("two limiters sharing the store admit a burst exactly, most of it without a store call", async () => {
      const { store, calls } = countingStore(await make());
      let now = 1_000_000;
      const a = new Limiter({ store, now: () => now });
      const b = new Limiter({ store, now: () => now });
      const t = slowTenant(200);
      let admitted = 0;
      let checks = 0;
      // Sequential requests on both, then concurrent waves on both: 600 in all, 3 × the burst,
      // so that waves meet leases too small for them (the rest ask again) and refusals.
      for (let i = 0; i < 90; i++) {
        now += 2;
        checks++;
        if (await decide((i % 3 === 0 ? b : a).check(t, undefined))) admitted++;
        expect(admitted).toBeLessThanOrEqual(200);
      }
      for (let wave = 0; wave < 17; wave++) {
        now += 2;
        const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => decide((i % 2 ? a : b).check(t, undefined))));
        checks += answers.length;
        admitted += answers.filter(Boolean).length;
        expect(admitted).toBeLessThanOrEqual(200);
      }
      expect(checks).toBe(600);
      // Nothing lost: what was not admitted is still leased, unused.
      expect(admitted + a.leased(t.id) + b.leased(t.id)).toBe(200);
      expect(calls.admit).toBeLessThan(admitted / 2);
      expect(Math.max(...calls.wants)).toBeLessThanOrEqual(20);
      // Closing gives the unused leases back: a third limiter can use exactly those.
      const unused = a.leased(t.id) + b.leased(t.id);
      await a.close();
      await b.close();
      const c = new Limiter({ store, now: () => now });
      let more = 0;
      for (let i = 0; i < unused + 5; i++) if (await decide(c.check(t, undefined))) more++;
      expect(more).toBe(unused);
      await c.close();
    });

    it("a small bucket stays exact: one store call per admitted request, each for one", async () => {
      const { store, calls } = countingStore(await make());
      let now = 1_000_000;
      const a = new Limiter({ store, now: () => now });
      const b = new Limiter({ store, now: () => now });
      const t = slowTenant(19);
      let admitted = 0;
      for (let i = 0; i < 19; i++) {
        now += 1;
        expect(await decide((i % 2 ? a : b).check(t, undefined))).toBe(true);
        admitted++;
      }
      expect(calls.admit).toBe(19);
      expect(calls.wants.every((w) => w === 1)).toBe(true);
      expect(a.leased(t.id) + b.leased(t.id)).toBe(0);
      // Concurrent requests are not serialised behind one another: each asks for itself.
      const t2 = slowTenant(10);
      const before = calls.admit;
      const wave = await Promise.all(Array.from({ length: 15 }, () => decide(a.check(t2, undefined))));
      expect(wave.filter(Boolean).length).toBe(10);
      expect(calls.admit - before).toBe(15);
      expect(admitted).toBe(19);
      await a.close();
      await b.close();
      expect(calls.refund).toBe(0);
    });

    it("an expired lease is refunded by the sweep, and another limiter can then use it", async () => {
      const { store, calls } = countingStore(await make());
      let now = 1_000_000;
      const a = new Limiter({ store, now: () => now });
      const b = new Limiter({ store, now: () => now });
      const t = slowTenant(100);
      // Grow a's lease: the clock does not move, so the observed rate is high.
      let admitted = 0;
      for (let i = 0; i < 20; i++) if (await decide(a.check(t, undefined))) admitted++;
      expect(admitted).toBe(20);
      const leased = a.leased(t.id);
      expect(leased).toBeGreaterThan(0);
      // b takes all the rest.
      let byB = 0;
      for (let i = 0; i < 100; i++) if (await decide(b.check(t, undefined))) byB++;
      expect(byB).toBe(100 - 20 - leased - b.leased(t.id));
      await b.close();
      const bRefunds = calls.refund;
      now += LEASE_MS;
      a.sweep();
      await a.settled();
      expect(a.leased(t.id)).toBe(0);
      expect(calls.refund).toBe(bRefunds + 1);
      // A fresh limiter sees exactly what was left: a's and b's refunds.
      const c = new Limiter({ store, now: () => now });
      let byC = 0;
      for (let i = 0; i < 100; i++) if (await decide(c.check(t, undefined))) byC++;
      expect(admitted + byB + byC + c.leased(t.id)).toBe(100);
      await a.close();
      await c.close();
    });

    it("leases count against the monthly quota exactly, and unused ones are given back", async () => {
      const { store } = countingStore(await make());
      const now = 1_000_000;
      const a = new Limiter({ store, now: () => now });
      const b = new Limiter({ store, now: () => now });
      // Quota 20,000 allows leases of 20; the bucket (burst 10,000) is not what binds.
      const t = slowTenant(10_000, 20_000);
      let admitted = 0;
      for (let i = 0; i < 200; i++) if (await decide((i % 2 ? a : b).check(t, undefined))) admitted++;
      expect(admitted).toBe(200);
      await a.close();
      await b.close();
      // Used: exactly the admitted requests, once the leases were refunded.
      const probe = new Limiter({ store, now: () => now });
      const tightQuota = { ...t, limits: { ...t.limits, monthlyRequests: 201 } };
      expect(await decide(probe.check(tightQuota, undefined))).toBe(true);
      expect(await decide(probe.check(tightQuota, undefined))).toBe(false);
      await probe.close();
    });
  });
}
