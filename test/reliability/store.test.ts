/** The two stores keep one contract: tested the same way, Redis over a real socket. */
import { afterAll, describe, expect, it } from "vitest";
import { storedEntry, storedFreshUntil } from "@portcullis/shared";
import { storeFactories } from "../helpers/redis.ts";

const { factories, closeAll } = storeFactories();
afterAll(closeAll);

for (const [kind, make] of Object.entries(factories)) {
  describe(`${kind} store`, () => {
    it("setIfNewer: a newer version wins, a fill never replaces an equal or newer entry", async () => {
      const store = await make();
      const e = (v: number) => JSON.stringify({ v, x: v });
      expect(await store.setIfNewer("k", e(5), 5, 10_000, "authoritative")).toBe(true);
      expect(await store.setIfNewer("k", e(4), 4, 10_000, "fill")).toBe(false);
      expect(await store.setIfNewer("k", e(5), 5, 10_000, "fill")).toBe(false);
      expect(await store.setIfNewer("k", e(5), 5, 10_000, "authoritative")).toBe(true);
      expect(await store.setIfNewer("k", e(4), 4, 10_000, "authoritative")).toBe(false);
      expect(await store.setIfNewer("k", e(6), 6, 10_000, "fill")).toBe(true);
      expect(JSON.parse((await store.get("k")) ?? "{}").v).toBe(6);
    });

    it("setIfNewer: a fill of the same version only renews its freshness, never shortens it", async () => {
      const store = await make();
      const ttl = { redisTtlMs: 60_000, redisStaleIfErrorMs: 600_000 };
      const entry = { v: 7, name: "acme" };
      const old = storedEntry(entry, ttl, 1_000_000);
      expect(await store.setIfNewer("f", old.json, 7, old.ttlMs, "authoritative")).toBe(true);
      const renewed = storedEntry(entry, ttl, 2_000_000);
      expect(await store.setIfNewer("f", renewed.json, 7, renewed.ttlMs, "fill")).toBe(true);
      expect(storedFreshUntil((await store.get("f")) ?? "")).toBe(2_000_000 + 60_000);
      // An older freshness, or a record without one, is not a renewal.
      expect(await store.setIfNewer("f", old.json, 7, old.ttlMs, "fill")).toBe(false);
      expect(await store.setIfNewer("f", JSON.stringify(entry), 7, 60_000, "fill")).toBe(false);
      expect(storedFreshUntil((await store.get("f")) ?? "")).toBe(2_000_000 + 60_000);
    });

    it("claimCounters moves the counters to a named batch, answers a batch left there first, and releaseCounters drops only that batch", async () => {
      const store = await make();
      expect(await store.claimCounters("{u}", "{u}:c", "b1")).toBeNull();
      await store.addCounters("{u}", { a: 2, b: 1 });
      expect(await store.claimCounters("{u}", "{u}:c", "b1")).toEqual({ batch: "b1", counters: { a: 2, b: 1 } });
      // Increments after the claim start a new pending hash.
      await store.addCounters("{u}", { a: 5 });
      // A batch left unreleased is answered again, under its own name.
      expect(await store.claimCounters("{u}", "{u}:c", "b2")).toEqual({ batch: "b1", counters: { a: 2, b: 1 } });
      await store.releaseCounters("{u}:c", "other");
      expect((await store.claimCounters("{u}", "{u}:c", "b2"))?.batch).toBe("b1");
      await store.releaseCounters("{u}:c", "b1");
      expect(await store.claimCounters("{u}", "{u}:c", "b2")).toEqual({ batch: "b2", counters: { a: 5 } });
      await store.releaseCounters("{u}:c", "b2");
      expect(await store.claimCounters("{u}", "{u}:c", "b3")).toBeNull();
    });

    it("getMany: every key's value in the keys' order, null where there is none", async () => {
      const store = await make();
      if (store.getMany === undefined) return expect(kind).toBe("memory");
      expect(await store.getMany([])).toEqual([]);
      // Keys of many hash slots: on a cluster, one MGET per slot, the answers put back in order.
      const keys = Array.from({ length: 40 }, (_, i) => `many:${i}`);
      for (const [i, key] of keys.entries())
        if (i % 3 !== 0) await store.setIfNewer(key, JSON.stringify({ v: i }), i, 10_000, "authoritative");
      const values = await store.getMany([...keys, "many:2"]);
      expect(values).toEqual([...keys.map((_, i) => (i % 3 === 0 ? null : JSON.stringify({ v: i }))), JSON.stringify({ v: 2 })]);
    });

    it("entries expire", async () => {
      const store = await make();
      await store.setIfNewer("short", JSON.stringify({ v: 1 }), 1, 30, "authoritative");
      expect(await store.get("short")).not.toBeNull();
      await new Promise((r) => setTimeout(r, 80));
      expect(await store.get("short")).toBeNull();
    });

    it("delivers published messages to subscribers", async () => {
      const store = await make();
      const got: string[] = [];
      const off = await store.subscribe(
        "chan",
        (m) => got.push(m),
        () => {},
      );
      await store.publish("chan", "hello");
      const deadline = Date.now() + 1_000;
      while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(got).toEqual(["hello"]);
      await off();
    });

    it("gcra allows a burst, then refuses with a retry time", async () => {
      const store = await make();
      const results = [];
      for (let i = 0; i < 5; i++) results.push(await store.gcra("rl", 1_000, 3, Date.now()));
      expect(results.slice(0, 3).every((r) => r.allowed)).toBe(true);
      expect(results[3]?.allowed).toBe(false);
      expect(results[3]?.retryAfterMs).toBeGreaterThan(0);
    });

    it("incr counts with an expiry set once", async () => {
      const store = await make();
      expect(await store.incr("n", 2, 10_000)).toBe(2);
      expect(await store.incr("n", 3, 10_000)).toBe(5);
    });
  });
}
