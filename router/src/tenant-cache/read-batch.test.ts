/** The cache's store reads, batched per turn of the event loop: real Redis throughout. */
import { afterAll, describe, expect, it } from "vitest";
import { MemoryStore, type RedisStore, type Store } from "@portcullis/shared";
import { createTestStore, deleteKeys } from "../../../test/helpers/redis.ts";
import { ReadBatcher } from "./read-batch.ts";

const opened: (RedisStore & { prefix: string })[] = [];
afterAll(async () => {
  for (const s of opened) {
    await s.close();
    await deleteKeys(s.prefix);
  }
});

/** A real store whose calls are counted. */
async function counted() {
  const store = await createTestStore();
  opened.push(store);
  const calls = { get: 0, getMany: [] as number[] };
  const get = store.get.bind(store);
  const getMany = store.getMany.bind(store);
  store.get = (key) => {
    calls.get++;
    return get(key);
  };
  store.getMany = (keys) => {
    calls.getMany.push(keys.length);
    return getMany(keys);
  };
  return { store, calls };
}

describe("ReadBatcher", () => {
  it("reads asked for in one turn go to Redis as one MGET, each answered with its own key's value", async () => {
    const { store, calls } = await counted();
    for (let i = 0; i < 30; i += 2) await store.setIfNewer(`r:${i}`, `{"v":${i}}`, i, 10_000, "authoritative");
    const reads = new ReadBatcher(store);
    const keys = Array.from({ length: 30 }, (_, i) => `r:${i}`);
    // The same key twice in a turn is read once; both callers get it.
    const answers = await Promise.all([...keys, "r:4"].map((k) => reads.get(k)));
    expect(answers).toEqual([...keys.map((_, i) => (i % 2 === 0 ? `{"v":${i}}` : null)), `{"v":4}`]);
    expect(calls.getMany).toEqual([30]);
    expect(calls.get).toBe(0);
    // A later turn is a batch of its own.
    expect(await reads.get("r:2")).toBe(`{"v":2}`);
    expect(calls.getMany).toEqual([30, 1]);
  });

  it("a turn with more reads than one call takes goes out in several calls, none lost", async () => {
    const { store, calls } = await counted();
    await store.setIfNewer("big:599", `{"v":1}`, 1, 10_000, "authoritative");
    const reads = new ReadBatcher(store);
    const answers = await Promise.all(Array.from({ length: 600 }, (_, i) => reads.get(`big:${i}`)));
    expect(answers.filter((a) => a !== null)).toEqual([`{"v":1}`]);
    expect(answers[599]).toBe(`{"v":1}`);
    expect(calls.getMany.reduce((a, b) => a + b, 0)).toBe(600);
    expect(Math.max(...calls.getMany)).toBe(256);
  });

  it("a failed call fails every read of its batch (the cache then asks the key service)", async () => {
    const store = await createTestStore();
    opened.push(store);
    const reads = new ReadBatcher(store);
    await store.close();
    const results = await Promise.allSettled([reads.get("a"), reads.get("b"), reads.get("a")]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected", "rejected"]);
  });

  it("a store without getMany is read one key at a time", async () => {
    const store: Store = new MemoryStore();
    await store.setIfNewer("m", `{"v":1}`, 1, 10_000, "authoritative");
    const reads = new ReadBatcher(store);
    expect(await Promise.all([reads.get("m"), reads.get("n")])).toEqual([`{"v":1}`, null]);
    await store.close();
  });
});
