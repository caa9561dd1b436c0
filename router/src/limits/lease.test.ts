/**
 * The Limiter's leases against a store on a test clock. Over 300 lines: one suite,
 * whose cases share the clock, the counting store and the warm-up helpers.
 */
import { describe, expect, it } from "vitest";
import { MemoryStore, type Store, type TenantRecord } from "@portcullis/shared";
import { createRouterMetrics } from "../ops/index.ts";
import { LEASE_MS, type LimitOutcome, Limiter, PREFETCH_GAP_MS, QUOTA_DENIAL_MS } from "./index.ts";
import { tenantRecord } from "../../../test/helpers/tenant-record.ts";

const tenant = tenantRecord;

/** A store on a test clock, counting the limiter's calls. */
function countingStore(now: () => number) {
  const inner = new MemoryStore({ now });
  const calls = { admit: 0, refund: 0, refunded: 0 };
  const s = Object.create(inner) as Store;
  s.admit = (rates, quota, want) => {
    calls.admit++;
    return inner.admit(rates, quota, want);
  };
  s.refund = (rates, quota, n) => {
    calls.refund++;
    calls.refunded += n;
    return inner.refund(rates, quota, n);
  };
  return { store: s, calls };
}

async function settle(r: LimitOutcome | Promise<LimitOutcome>): Promise<LimitOutcome> {
  return r instanceof Promise ? await r : r;
}

describe("Limiter leases", () => {
  // 100 requests a second, burst 400: leases of up to 40.
  const busy = () => tenant({ requestsPerSecond: 100, burst: 400 });

  /** Requests without moving the clock until the lease is at least `size`. */
  async function warm(limiter: Limiter, t: TenantRecord, size: number) {
    for (let i = 0; i < 100 && limiter.leased(t.id) < size; i++)
      expect((await settle(limiter.check(t, undefined))).ok).toBe(true);
    expect(limiter.leased(t.id)).toBeGreaterThanOrEqual(size);
  }

  it("decides synchronously from a warm lease, with RateLimit headers counting it down", async () => {
    const now = 1_000_000;
    const { store, calls } = countingStore(() => now);
    const limiter = new Limiter({ store, now: () => now });
    const t = busy();
    const first = limiter.check(t, undefined);
    expect(first).toBeInstanceOf(Promise);
    await warm(limiter, t, 4);
    const before = calls.admit;
    const left = limiter.leased(t.id);
    const a = limiter.check(t, undefined);
    const b = limiter.check(t, undefined);
    expect(a).not.toBeInstanceOf(Promise);
    expect(b).not.toBeInstanceOf(Promise);
    expect(calls.admit).toBe(before);
    expect(limiter.leased(t.id)).toBe(left - 2);
    const ra = Number(/r=(\d+)/.exec((a as LimitOutcome).headers?.ratelimit ?? "")?.[1]);
    expect((b as LimitOutcome).headers).toEqual({
      "ratelimit-policy": '"tenant";q=400;w=4',
      ratelimit: `"tenant";r=${ra - 1};t=1`,
    });
    await limiter.close();
  });

  it("remembers a rate refusal until the store's retry time, answering without a store call", async () => {
    let now = 1_000_000;
    const { store, calls } = countingStore(() => now);
    const limiter = new Limiter({ store, now: () => now });
    const t = tenant({ requestsPerSecond: 0.1, burst: 2 });
    expect((await settle(limiter.check(t, undefined))).ok).toBe(true);
    expect((await settle(limiter.check(t, undefined))).ok).toBe(true);
    const refused = await settle(limiter.check(t, undefined));
    expect(refused).toMatchObject({ ok: false, reason: "rate_limited", headers: { "retry-after": "10" } });
    expect(calls.admit).toBe(3);
    now += 4_000;
    const again = limiter.check(t, undefined);
    expect(again).not.toBeInstanceOf(Promise);
    expect(again).toMatchObject({
      ok: false,
      reason: "rate_limited",
      headers: { "retry-after": "6", ratelimit: '"tenant";r=0;t=6' },
    });
    expect(calls.admit).toBe(3);
    // The moment one request fits, the store is asked again.
    now += 6_000;
    expect((await settle(limiter.check(t, undefined))).ok).toBe(true);
    expect(calls.admit).toBe(4);
    await limiter.close();
  });

  it("remembers a quota refusal for QUOTA_DENIAL_MS, and forgets it when the quota changes", async () => {
    let now = 1_000_000;
    const { store, calls } = countingStore(() => now);
    const limiter = new Limiter({ store, now: () => now });
    const t = tenant({ monthlyRequests: 1 });
    expect((await settle(limiter.check(t, undefined))).ok).toBe(true);
    expect(await settle(limiter.check(t, undefined))).toMatchObject({ ok: false, reason: "quota_exceeded" });
    expect(limiter.check(t, undefined)).toMatchObject({ ok: false, reason: "quota_exceeded" });
    expect(calls.admit).toBe(2);
    now += QUOTA_DENIAL_MS;
    expect(await settle(limiter.check(t, undefined))).toMatchObject({ ok: false, reason: "quota_exceeded" });
    expect(calls.admit).toBe(3);
    // A raised quota is a new record: asked at once.
    const raised = tenant({ monthlyRequests: 2 });
    expect((await settle(limiter.check(raised, undefined))).ok).toBe(true);
    expect(calls.admit).toBe(4);
    await limiter.close();
  });

  it("refunds an expired lease (the sweep, or the next request) and close refunds the rest", async () => {
    let now = 1_000_000;
    const { store, calls } = countingStore(() => now);
    const metrics = createRouterMetrics();
    const limiter = new Limiter({ store, metrics, now: () => now });
    const t = busy();
    const k = tenant({ requestsPerSecond: 100, burst: 400 });
    await warm(limiter, t, 2);
    const leased = limiter.leased(t.id);
    now += LEASE_MS - 1;
    limiter.sweep();
    expect(calls.refund).toBe(0);
    now += 1;
    limiter.sweep();
    await limiter.settled();
    expect(limiter.leased(t.id)).toBe(0);
    expect(calls).toMatchObject({ refund: 1, refunded: leased });
    // The next request after expiry refunds too, before it asks for a new lease.
    await warm(limiter, t, 2);
    const again = limiter.leased(t.id);
    now += LEASE_MS;
    expect((await settle(limiter.check(t, undefined))).ok).toBe(true);
    await limiter.settled();
    expect(calls).toMatchObject({ refund: 2, refunded: leased + again });
    // A key's traffic has a lease of its own; close gives back every lease.
    await warm(limiter, t, 1);
    for (let i = 0; i < 20 && limiter.leased("key_1") === 0; i++) await settle(limiter.check(k, "key_1"));
    const open = limiter.leased(t.id) + limiter.leased("key_1");
    expect(limiter.leased("key_1")).toBeGreaterThan(0);
    await limiter.close();
    expect(calls.refunded).toBe(leased + again + open);
    const text = await metrics.registry.metrics();
    expect(text).toContain(`portcullis_limiter_store_calls_total{call="admit"} ${calls.admit}`);
    expect(text).toContain(`portcullis_limiter_store_calls_total{call="refund"} ${calls.refund}`);
    expect(text).toMatch(new RegExp(`^portcullis_limiter_refunded_total ${calls.refunded}$`, "m"));
  });

  it("keeps a lease across a re-read record with the same numbers, refunds it when they change", async () => {
    const now = 1_000_000;
    const { store, calls } = countingStore(() => now);
    const limiter = new Limiter({ store, now: () => now });
    await warm(limiter, busy(), 3);
    const leased = limiter.leased("ten_1");
    // The same limits in a new record object (the cache re-read it): no store call.
    expect(limiter.check(busy(), undefined)).not.toBeInstanceOf(Promise);
    expect(limiter.leased("ten_1")).toBe(leased - 1);
    // New limits: the old lease goes back, a new one is asked for under the new policy.
    const changed = tenant({ requestsPerSecond: 100, burst: 500 });
    const r = limiter.check(changed, undefined);
    expect(r).toBeInstanceOf(Promise);
    expect((await r).headers?.["ratelimit-policy"]).toBe('"tenant";q=500;w=5');
    await limiter.settled();
    expect(calls.refunded).toBe(leased - 1);
    await limiter.close();
  });

  it("requests arriving while a lease is fetched share the fetch, up to its size", async () => {
    const now = 1_000_000;
    const { store, calls } = countingStore(() => now);
    const limiter = new Limiter({ store, now: () => now });
    const t = busy();
    // Grow the lease to its largest size (40), then use it up: as it runs low, the
    // next lease is asked for ahead (steady traffic), for at least 30 (40 less what
    // was left), and this fetch is still in flight.
    await warm(limiter, t, 20);
    const before = calls.admit;
    while (limiter.leased(t.id) > 0) limiter.check(t, undefined);
    // 20 requests at once: all join the fetch in flight, none asks the store.
    const wave = await Promise.all(Array.from({ length: 20 }, () => settle(limiter.check(t, undefined))));
    expect(wave.every((o) => o.ok)).toBe(true);
    expect(calls.admit - before).toBe(1);
    // More than a lease's worth at once: what is left, the lease fetched ahead as it
    // ran low (sized to what may be held beside the rest), then 40 per fetch. One
    // fetch per lease, not one per request.
    await limiter.settled();
    const left = limiter.leased(t.id);
    const after = calls.admit;
    const twice = await Promise.all(Array.from({ length: 80 + left }, () => settle(limiter.check(t, undefined))));
    expect(twice.every((o) => o.ok)).toBe(true);
    expect(calls.admit - after).toBe(3);
    await limiter.close();
  });

  /** 50 requests a second for `n` requests: how many had to wait for the store. */
  async function steady(limiter: Limiter, t: TenantRecord, clock: { now: number }, n: number) {
    let waited = 0;
    let most = 0;
    for (let i = 0; i < n; i++) {
      clock.now += 20;
      const r = limiter.check(t, undefined);
      if (r instanceof Promise) {
        if (i >= 50) waited++;
        expect((await r).ok).toBe(true);
      } else expect(r.ok).toBe(true);
      await new Promise((resolve) => setImmediate(resolve));
      most = Math.max(most, limiter.leased(t.id));
    }
    return { waited, most };
  }

  /**
   * Requests every 20 ms until one more admit has gone to the store (the lease fetched
   * ahead); the outcomes of those requests.
   */
  /** A limiter on a counting store, both on a clock the test moves. */
  function onClock() {
    const clock = { now: 1_000_000 };
    const { store, calls } = countingStore(() => clock.now);
    return { clock, calls, limiter: new Limiter({ store, now: () => clock.now }) };
  }

  async function untilFetchedAhead(limiter: Limiter, t: TenantRecord, clock: { now: number }, calls: { admit: number }) {
    const outcomes: LimitOutcome[] = [];
    const before = calls.admit;
    for (let guard = 0; calls.admit === before && guard < 100; guard++) {
      clock.now += 20;
      outcomes.push(await settle(limiter.check(t, undefined)));
      await new Promise((resolve) => setImmediate(resolve));
    }
    return outcomes;
  }

  it("fetches the next lease ahead for steady traffic, so no request waits for the store", async () => {
    const { clock, calls, limiter } = onClock();
    const t = busy();
    // For 20 s: after the first few leases every request is answered from memory,
    // while the store is asked about once per lease.
    const { waited, most } = await steady(limiter, t, clock, 1_000);
    expect(waited).toBe(0);
    // Never more held than one lease's bound (maxLease 40), current and next together.
    expect(most).toBeLessThanOrEqual(40);
    expect(calls.admit).toBeLessThan(1_000 / 20);
    // Traffic stops: what is held (the current lease and the one fetched ahead, if any)
    // goes back, exactly.
    const held = limiter.leased(t.id);
    expect(held).toBeGreaterThan(0);
    clock.now += LEASE_MS;
    limiter.sweep();
    await limiter.settled();
    expect(limiter.leased(t.id)).toBe(0);
    expect(calls.refunded).toBe(held);
    await limiter.close();
    expect(calls.refunded).toBe(held);
  });

  it("gives back an expired lease at its own expiry while the next one, fetched ahead, is held", async () => {
    const { clock, calls, limiter } = onClock();
    const t = busy();
    await steady(limiter, t, clock, 200);
    // Use the current lease down to its quarter: the next is fetched ahead and answered
    // now, so the set's last answer is recent while the current lease is older.
    const before = calls.admit;
    for (const outcome of await untilFetchedAhead(limiter, t, clock, calls)) expect(outcome.ok).toBe(true);
    await limiter.settled();
    const held = limiter.leased(t.id);
    expect(calls.admit).toBe(before + 1);
    // Traffic stops. A sweep after the older lease expired, but less than LEASE_MS
    // after the last answer, gives back the older lease's rest at once.
    clock.now += LEASE_MS - 100;
    limiter.sweep();
    await limiter.settled();
    expect(calls.refund).toBe(1);
    expect(calls.refunded).toBeGreaterThan(0);
    expect(limiter.leased(t.id)).toBe(held - calls.refunded);
    // The lease fetched ahead goes back at its own expiry.
    clock.now += 200;
    limiter.sweep();
    await limiter.settled();
    expect(limiter.leased(t.id)).toBe(0);
    expect(calls.refunded).toBe(held);
    await limiter.close();
  });

  it("gives back both leases when the tenant's limits change while one is fetched ahead", async () => {
    const { clock, calls, limiter } = onClock();
    const t = busy();
    await steady(limiter, t, clock, 200);
    await untilFetchedAhead(limiter, t, clock, calls);
    await limiter.settled();
    const held = limiter.leased(t.id);
    expect(held).toBeGreaterThan(0);
    const changed = tenant({ requestsPerSecond: 100, burst: 500 });
    expect((await settle(limiter.check(changed, undefined))).ok).toBe(true);
    await limiter.settled();
    expect(calls.refunded).toBe(held);
    await limiter.close();
  });

  it("does not fetch ahead for a request after a pause: sparse traffic takes a lease when it needs one", async () => {
    const { clock, calls, limiter } = onClock();
    // Burst 20: leases of at most 2, fetched ahead when the last one is used.
    const t = tenant({ requestsPerSecond: 100, burst: 20 });
    // Dense traffic (every 100 ms) until this router holds exactly one leased request.
    let guard = 0;
    do {
      clock.now += 100;
      expect((await settle(limiter.check(t, undefined))).ok).toBe(true);
      await limiter.settled();
    } while (limiter.leased(t.id) !== 1 && guard++ < 50);
    expect(limiter.leased(t.id)).toBe(1);
    // After a pause, the request that uses it is answered from memory and asks for nothing.
    const before = calls.admit;
    clock.now += PREFETCH_GAP_MS;
    const r = limiter.check(t, undefined);
    expect(r).not.toBeInstanceOf(Promise);
    await limiter.settled();
    expect(calls.admit).toBe(before);
    expect(limiter.leased(t.id)).toBe(0);
    // With steady traffic the same request would have fetched the next lease ahead.
    do {
      clock.now += 100;
      await settle(limiter.check(t, undefined));
      await limiter.settled();
    } while (limiter.leased(t.id) !== 1 && guard++ < 100);
    const again = calls.admit;
    clock.now += 100;
    expect(limiter.check(t, undefined)).not.toBeInstanceOf(Promise);
    await limiter.settled();
    expect(calls.admit).toBe(again + 1);
    expect(limiter.leased(t.id)).toBe(2);
    await limiter.close();
  });
});
