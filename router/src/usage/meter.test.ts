import { describe, expect, it } from "vitest";
import { LIMIT_KEYS, MemoryStore, type Store } from "@portcullis/shared";
import { UsageMeter } from "./meter.ts";

/** A store whose counter writes fail, as Redis does when it is unreachable. */
function failingStore(): Store & { fail: boolean } {
  const inner = new MemoryStore();
  const s = Object.create(inner) as Store & { fail: boolean };
  s.fail = true;
  s.addCounters = async (key, inc) => {
    if (s.fail) throw new Error("Stream isn't writeable");
    return inner.addCounters(key, inc);
  };
  s.takeCounters = (key) => inner.takeCounters(key);
  return s;
}

describe("UsageMeter", () => {
  it("keeps a failed batch and delivers it with the next flush", async () => {
    const store = failingStore();
    const meter = new UsageMeter({ store, intervalMs: 60_000, now: () => Date.UTC(2026, 10, 5) });
    meter.record("ten_a", true, 10, 20);
    meter.record("ten_a", false, 0, 0);
    await meter.flush();
    expect(meter.depth).toBe(1);
    store.fail = false;
    meter.record("ten_a", true, 1, 2);
    await meter.close();
    expect(await store.takeCounters(LIMIT_KEYS.usagePending)).toEqual({
      "2026-11|ten_a|r": 2,
      "2026-11|ten_a|x": 1,
      "2026-11|ten_a|i": 11,
      "2026-11|ten_a|o": 22,
    });
  });

  it("counts each exchange in the month it ended in, across a month's end and a failed flush", async () => {
    const store = failingStore();
    let now = Date.UTC(2026, 10, 30, 23, 59, 59, 900);
    const meter = new UsageMeter({ store, intervalMs: 60_000, now: () => now });
    meter.record("ten_a", true, 5, 0);
    meter.record("ten_b", true, 0, 7);
    now += 200; // December
    meter.record("ten_a", true, 0, 3);
    expect(meter.depth).toBe(3);
    await meter.flush();
    expect(meter.depth).toBe(3);
    store.fail = false;
    meter.record("ten_a", false, 0, 0);
    expect(meter.depth).toBe(3);
    await meter.close();
    expect(meter.depth).toBe(0);
    expect(await store.takeCounters(LIMIT_KEYS.usagePending)).toEqual({
      "2026-11|ten_a|r": 1,
      "2026-11|ten_a|i": 5,
      "2026-11|ten_b|r": 1,
      "2026-11|ten_b|o": 7,
      "2026-12|ten_a|r": 1,
      "2026-12|ten_a|x": 1,
      "2026-12|ten_a|o": 3,
    });
  });
});
