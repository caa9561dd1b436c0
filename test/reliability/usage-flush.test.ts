/**
 * The usage meter's flush into a real Redis: counts for many tenants go out in slices
 * (one atomic call each, requests served between them), and a store failure partway
 * through keeps exactly what was not delivered: nothing lost, nothing counted twice.
 */
import { afterAll, describe, expect, it } from "vitest";
import { LIMIT_KEYS, type RedisStore } from "@portcullis/shared";
import { FLUSH_SLICE, UsageMeter } from "../../router/src/usage/index.ts";
import { createTestStore, deleteKeys } from "../helpers/redis.ts";

const NOW = Date.UTC(2026, 10, 5);
const made: (RedisStore & { prefix: string })[] = [];
afterAll(async () => {
  for (const store of made) {
    await store.close();
    await deleteKeys(store.prefix);
  }
});

/** A real Redis store whose `addCounters` fails on the calls listed (1-based). */
async function storeFailingOn(failing: number[]) {
  const store = await createTestStore();
  made.push(store);
  let calls = 0;
  const add = store.addCounters.bind(store);
  store.addCounters = async (key, increments) => {
    calls++;
    if (failing.includes(calls)) throw new Error("Connection is closed.");
    return add(key, increments);
  };
  return Object.assign(store, { calls: () => calls });
}

/** Expected pending-hash fields for `tenants` tenants, tenant i with i + 1 allowed requests. */
function expected(tenants: number, times = 1): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < tenants; i++) {
    out[`2026-11|ten_${i}|r`] = (i + 1) * times;
    out[`2026-11|ten_${i}|i`] = 10 * times;
  }
  return out;
}

function record(meter: UsageMeter, tenants: number): void {
  for (let i = 0; i < tenants; i++) for (let n = 0; n <= i; n++) meter.record(`ten_${i}`, true, n === 0 ? 10 : 0, 0);
}

describe("usage flush", () => {
  it("sends many tenants in slices of FLUSH_SLICE, each counted once", async () => {
    const tenants = FLUSH_SLICE * 2 + 37;
    const store = await storeFailingOn([]);
    const meter = new UsageMeter({ store, intervalMs: 60_000, now: () => NOW });
    record(meter, tenants);
    await meter.flush();
    expect(store.calls()).toBe(3);
    expect(meter.depth).toBe(0);
    expect(await store.takeCounters(LIMIT_KEYS.usagePending)).toEqual(expected(tenants));
    await meter.close();
  });

  it("keeps the failed slice and the unsent rest, and delivers them with the next flush", async () => {
    const tenants = FLUSH_SLICE * 3;
    // The second slice fails: the first is in Redis, the second and third wait.
    const store = await storeFailingOn([2]);
    const meter = new UsageMeter({ store, intervalMs: 60_000, now: () => NOW });
    record(meter, tenants);
    await meter.flush();
    expect(store.calls()).toBe(2);
    expect(meter.depth).toBe(tenants - FLUSH_SLICE);
    const first = await store.takeCounters(LIMIT_KEYS.usagePending);
    expect(Object.keys(first)).toHaveLength(FLUSH_SLICE * 2);
    // Traffic after the failure merges with the counts kept back.
    record(meter, tenants);
    await meter.close();
    const rest = await store.takeCounters(LIMIT_KEYS.usagePending);
    const total: Record<string, number> = { ...rest };
    for (const [field, n] of Object.entries(first)) total[field] = (total[field] ?? 0) + n;
    expect(total).toEqual(expected(tenants, 2));
  });
});
