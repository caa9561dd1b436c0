/** The two stores keep one contract: tested the same way, Redis over a real socket. */
import { afterAll, describe, expect, it } from "vitest";
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
