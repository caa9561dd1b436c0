import { describe, expect, it } from "vitest";
import { MemoryStore, type Store } from "@portcullis/shared";
import { createRouterMetrics } from "../ops/index.ts";
import { FALLBACK_MS, Limiter } from "./index.ts";
import { tenantRecord } from "../../../test/helpers/tenant-record.ts";

const tenant = tenantRecord;

/** A store whose limiter calls fail, as Redis does when it is unreachable. */
function failingStore(): Store & { fail: boolean; calls: number } {
  const inner = new MemoryStore();
  const s = Object.create(inner) as Store & { fail: boolean; calls: number };
  s.fail = true;
  s.calls = 0;
  s.admit = async (rates, quota) => {
    s.calls++;
    if (s.fail) throw new Error("Stream isn't writeable");
    return inner.admit(rates, quota);
  };
  return s;
}

describe("Limiter", () => {
  it("holds concurrency slots until released, and gives a refused request's slot back", async () => {
    const limiter = new Limiter({ store: new MemoryStore() });
    const t = tenant({ concurrency: 2, requestsPerSecond: 0.001, burst: 2 });
    expect((await limiter.check(t, undefined)).ok).toBe(true);
    expect((await limiter.check(t, undefined)).ok).toBe(true);
    const third = await limiter.check(t, undefined);
    expect(third.ok === false && third.reason).toBe("concurrency_limited");
    limiter.release(t.id);
    // The slot is free but the bucket is empty: rate refusal, and the slot is given back.
    const fourth = await limiter.check(t, undefined);
    expect(fourth.ok === false && fourth.reason).toBe("rate_limited");
    expect(limiter.inFlight(t.id)).toBe(1);
    limiter.release(t.id);
    expect(limiter.inFlight(t.id)).toBe(0);
  });

  it("skips the store entirely for a tenant without rate or quota", async () => {
    const store = failingStore();
    const limiter = new Limiter({ store });
    expect(await limiter.check(tenant(), undefined)).toEqual({ ok: true, headers: null });
    expect(store.calls).toBe(0);
  });

  it("decides locally while the store fails, shows it in metrics, and returns to the store after FALLBACK_MS", async () => {
    let now = 1_000_000;
    const store = failingStore();
    const metrics = createRouterMetrics();
    const limiter = new Limiter({ store, metrics, now: () => now });
    const t = tenant({ requestsPerSecond: 0.001, burst: 2, monthlyRequests: 1 });
    // The quota (1) is not enforced locally; the rate (burst 2) is.
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await limiter.check(t, undefined)).ok);
    expect(codes).toEqual([true, true, false]);
    expect(store.calls).toBe(1);
    expect(limiter.degraded).toBe(true);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^portcullis_limiter_degraded 1$/m);
    expect(text).toMatch(/^portcullis_limiter_store_errors_total 1$/m);
    expect(text).toMatch(/^portcullis_limiter_local_decisions_total 3$/m);
    store.fail = false;
    now += FALLBACK_MS;
    expect(limiter.degraded).toBe(false);
    expect((await limiter.check(t, undefined)).ok).toBe(true);
    expect(store.calls).toBe(2);
    const quota = await limiter.check(t, undefined);
    expect(quota.ok === false && quota.reason).toBe("quota_exceeded");
  });

  it("builds RateLimit-Policy from burst and rate (window: time to refill the bucket)", async () => {
    const limiter = new Limiter({ store: new MemoryStore() });
    const ok = await limiter.check(tenant({ requestsPerSecond: 20, burst: 40 }), undefined);
    expect(ok.ok && ok.headers).toEqual({ "ratelimit-policy": '"tenant";q=40;w=2', ratelimit: '"tenant";r=39;t=1' });
  });
});

describe("Limiter store calls", () => {
  it("sends the admits asked for in one turn of the event loop in one store call, each answered as alone", async () => {
    const inner = new MemoryStore();
    const batches: number[] = [];
    const s = Object.create(inner) as Store;
    s.admitMany = (calls) => {
      batches.push(calls.length);
      return inner.admitMany(calls);
    };
    const limiter = new Limiter({ store: s });
    // Ten tenants, each with a burst of 2: the third request of each is refused.
    const tenants = Array.from({ length: 10 }, (_, i) => ({ ...tenant({ requestsPerSecond: 0.001, burst: 2 }), id: `ten_${i}` }));
    const first = tenants.map((t) => limiter.check(t, undefined));
    expect(first.every((r) => r instanceof Promise)).toBe(true);
    expect((await Promise.all(first)).every((r) => r.ok)).toBe(true);
    expect(batches).toEqual([10]);
    const rest = await Promise.all(tenants.flatMap((t) => [limiter.check(t, undefined), limiter.check(t, undefined)]));
    expect(rest.map((r) => r.ok)).toEqual(tenants.flatMap(() => [true, false]));
    expect(batches.slice(1)).toEqual([20]);
    await limiter.close();
  });

  it("admits one at a time with a store that cannot batch", async () => {
    const inner = new MemoryStore();
    let admits = 0;
    const plain: Store = Object.create(inner);
    plain.admitMany = undefined;
    plain.admit = (rates, quota, want) => {
      admits++;
      return inner.admit(rates, quota, want);
    };
    const limiter = new Limiter({ store: plain });
    const tenants = Array.from({ length: 3 }, (_, i) => ({ ...tenant({ requestsPerSecond: 0.001, burst: 1 }), id: `ten_${i}` }));
    const answers = await Promise.all(tenants.map((t) => limiter.check(t, undefined)));
    expect(answers.every((r) => r.ok)).toBe(true);
    expect(admits).toBe(3);
    await limiter.close();
  });
});
