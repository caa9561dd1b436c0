/**
 * The durable stream both stores offer the audit trail: the same semantics over a
 * real Redis socket and in process — bounded appends, one delivery per group,
 * re-reading unacknowledged entries, taking over a silent consumer's entries, and
 * deletion on acknowledgement. Plus the embedded stack's whole path (in-process
 * store → consumer → PGlite).
 */
import { afterAll, describe, expect, it } from "vitest";
import type { StreamStore } from "@portcullis/shared";
import { createTestStore, deleteKeys, storeFactories } from "../helpers/redis.ts";
import { startTestStack } from "../helpers/stack.ts";

const { factories, track, closeAll } = storeFactories();
afterAll(closeAll);

const read = (store: StreamStore, consumer: string, pending = false, blockMs = 0) =>
  store.streamRead("s", { group: "g", consumer, count: 100, blockMs, pending });

for (const [kind, make] of Object.entries(factories)) {
  describe(`${kind} store streams`, () => {
    it("appends up to the bound and reports how many it took", async () => {
      const store = await make();
      expect(await store.streamAppend("s", ["a", "b", "c"], 4)).toBe(3);
      expect(await store.streamAppend("s", ["d", "e", "f"], 4)).toBe(1);
      expect(await store.streamLength("s")).toBe(4);
      expect((await read(store, "c1")).map((e) => e.data)).toEqual(["a", "b", "c", "d"]);
    });

    it("delivers each entry once per group, re-reads unacknowledged ones, deletes acknowledged ones", async () => {
      const store = await make();
      await store.streamAppend("s", ["1", "2", "3"], 100);
      const first = await read(store, "c1");
      expect(first.map((e) => e.data)).toEqual(["1", "2", "3"]);
      expect(await read(store, "c2")).toEqual([]);
      // Not acknowledged: still this consumer's, in order.
      expect((await read(store, "c1", true)).map((e) => e.data)).toEqual(["1", "2", "3"]);
      await store.streamAck("s", "g", [first[0]!.id, first[1]!.id]);
      expect((await read(store, "c1", true)).map((e) => e.data)).toEqual(["3"]);
      expect(await store.streamLength("s")).toBe(1);
    });

    it("lets another consumer take over entries left unacknowledged", async () => {
      const store = await make();
      await store.streamAppend("s", ["x"], 100);
      expect(await read(store, "dead")).toHaveLength(1);
      await new Promise((r) => setTimeout(r, 30));
      const claimed = await store.streamClaim("s", "g", "alive", 10, 100);
      expect(claimed.map((e) => e.data)).toEqual(["x"]);
      expect((await read(store, "alive", true)).map((e) => e.data)).toEqual(["x"]);
    });

    it("wakes a blocked reader when an entry arrives", async () => {
      const store = await make();
      const waiting = read(store, "c1", false, 2_000);
      await new Promise((r) => setTimeout(r, 50));
      await store.streamAppend("s", ["late"], 100);
      expect((await waiting).map((e) => e.data)).toEqual(["late"]);
    });
  });
}

describe("redis store streams after Redis lost its data", () => {
  it("recreates the consumer group and goes on reading", async () => {
    const store = await createTestStore();
    track(store, store.prefix);
    await store.streamAppend("s", ["before"], 100);
    expect(await read(store, "c1")).toHaveLength(1);
    await deleteKeys(store.prefix); // as a restarted, empty Redis would be
    await store.streamAppend("s", ["after"], 100);
    expect((await read(store, "c1")).map((e) => e.data)).toEqual(["after"]);
  });
});

describe("embedded stack (PGlite, in-process store)", () => {
  it("moves router decisions into the database through the in-process stream", async () => {
    const stack = await startTestStack({ backend: "embedded", audit: "stream" });
    try {
      const acme = await stack.tenant("acme");
      const ok = await stack.request(acme.host);
      const refused = await stack.request("nobody.localhost");
      const okRows = await stack.auditRows(ok.headers["x-request-id"] as string);
      const refusedRows = await stack.auditRows(refused.headers["x-request-id"] as string);
      expect(okRows.map((r) => r.reason)).toEqual(["allowed"]);
      expect(refusedRows.map((r) => r.reason)).toEqual(["unknown_host"]);
      expect(refusedRows[0]?.seq).toBe((okRows[0]?.seq ?? 0) + 1);
      expect(refusedRows[0]?.prevHash).toBe(okRows[0]?.hash);
    } finally {
      await stack.close();
    }
  });
});
