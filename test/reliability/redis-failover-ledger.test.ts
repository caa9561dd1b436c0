/**
 * What a change of Redis master loses, counted (`shared/src/cache/ledger.ts`). A
 * Sentinel deployment whose replica replicates through a relay: the test holds what
 * the master passes on, writes, kills the master and drops what was held, so the
 * replica the sentinels promote really lacks those writes; the store must count
 * exactly them. A reconnection to the same server counts nothing; a restart without
 * persistence is a change whose ledger is gone.
 */
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type MasterChange, RedisStore } from "@portcullis/shared";
import { type SentinelDeployment, startSentinels } from "../helpers/redis-sentinel.ts";
import { RedisServer } from "../helpers/redis-server.ts";
import { eventually } from "../helpers/stack.ts";

const bucket = [{ key: "rl:{t}:t", emissionIntervalMs: 1, burst: 1_000 }];

/** The store's ledger as a server holds it, or null. */
async function ledgerOn(port: number, prefix: string): Promise<Record<string, string> | null> {
  const client = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0 });
  client.on("error", () => {});
  try {
    await client.connect();
    const [key] = await client.keys(`${prefix}ledger:*`);
    return key === undefined ? null : await client.hgetall(key);
  } finally {
    client.disconnect();
  }
}

describe("a Sentinel failover that loses the master's last writes", () => {
  let redis: SentinelDeployment;
  let store: RedisStore | null = null;

  beforeAll(async () => {
    // The sentinels leave the relayed replica alone for a minute (see the helper).
    redis = await startSentinels({ relayReplication: true, failoverTimeoutMs: 60_000 });
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    await redis?.close();
  });

  it("counts what the promoted replica lacks: admits, usage, audit events and records", async () => {
    store = new RedisStore({
      sentinels: redis.sentinels.map((s) => ({ host: "127.0.0.1", port: s.port })),
      sentinelName: redis.name,
      prefix: "lost:",
    });
    await store.ready();
    const changes: MasterChange[] = [];
    store.onMasterChange((c) => changes.push(c));

    // Replicated: the replica holds these and a ledger that covers them.
    expect(await store.streamAppend("audit", ["kept"], 1_000)).toBe(1);
    await store.addCounters("usage", { a: 1 }, 1);
    expect((await store.admit(bucket, null, 1)).ok).toBe(true);
    expect(await store.setIfNewer("rec", '{"v":1}', 1, 60_000, "authoritative")).toBe(true);
    await eventually(async () => (await ledgerOn(redis.replica.port, "lost:"))?.records === "1", 10_000, 50);

    // Held on the way to the replica: the master acknowledges these, the replica never sees them.
    const relay = redis.replication;
    if (relay === null) throw new Error("no replication relay");
    relay.blackhole();
    expect(await store.streamAppend("audit", ["lost-1", "lost-2", "lost-3"], 1_000)).toBe(3);
    expect(await store.streamAppend("audit", ["lost-4", "lost-5"], 1_000)).toBe(2);
    await store.addCounters("usage", { a: 3, b: 1 }, 7);
    const leased = await store.admit(bucket, null, 4);
    expect(leased.ok && leased.granted).toBe(4);
    expect(await store.setIfNewer("rec", '{"v":2}', 2, 60_000, "authoritative")).toBe(true);
    // The ledger follows them to the master (and no further).
    await eventually(async () => (await ledgerOn(redis.master.port, "lost:"))?.records === "2", 5_000, 50);
    expect(changes).toHaveLength(0);

    await redis.master.kill();
    await relay.stop();
    await eventually(async () => changes.length > 0, 30_000, 100);

    // The sentinel asked first may be a moment behind the one the store asked.
    await eventually(async () => (await redis.masterPort()) === redis.replica.port, 10_000, 100);
    expect(changes).toEqual([{ atRisk: { admits: 4, counters: 7, stream: 5, records: 1 }, ledgerFound: true }]);
    // What was counted is what is missing.
    const direct = new Redis({ port: redis.replica.port, lazyConnect: true });
    try {
      expect(await direct.xlen("lost:audit")).toBe(1);
      expect(await direct.hgetall("lost:usage")).toEqual({ a: "1" });
      expect(await direct.get("lost:rec")).toBe('{"v":1}');
    } finally {
      direct.disconnect();
    }

    // The new master's ledger starts from here: writes now are not counted again.
    // (The client may still be settling on the new master: the append is tried until it lands.)
    await eventually(async () => (await store!.streamAppend("audit", ["after"], 1_000).catch(() => 0)) === 1, 10_000, 100);
    await eventually(async () => Number((await ledgerOn(redis.replica.port, "lost:"))?.stream) >= 7, 5_000, 50);
    expect(changes).toHaveLength(1);
  }, 90_000);
});

describe("reconnections that are not a change of master", () => {
  let server: RedisServer;
  const stores: RedisStore[] = [];

  beforeAll(async () => {
    server = await RedisServer.start();
  }, 30_000);
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("counts nothing when the connection is cut and made again to the same server", async () => {
    const store = new RedisStore({ url: server.url, prefix: "same:" });
    stores.push(store);
    await store.ready();
    const changes: MasterChange[] = [];
    store.onMasterChange((c) => changes.push(c));
    await store.streamAppend("audit", ["a", "b"], 100);
    await eventually(async () => (await ledgerOn(server.port, "same:"))?.stream === "2", 5_000, 50);

    const admin = new Redis(server.url);
    try {
      await admin.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
    } finally {
      admin.disconnect();
    }
    await eventually(async () => (await store.streamAppend("audit", ["c"], 100).catch(() => 0)) === 1, 10_000, 100);
    await eventually(async () => (await ledgerOn(server.port, "same:"))?.stream === "3", 5_000, 50);
    expect(changes).toEqual([]);
  }, 30_000);

  it("counts a restart without persistence as a change whose ledger is gone", async () => {
    const store = new RedisStore({ url: server.url, prefix: "restart:" });
    stores.push(store);
    await store.ready();
    const changes: MasterChange[] = [];
    store.onMasterChange((c) => changes.push(c));
    await store.addCounters("usage", { a: 5 }, 5);
    await store.streamAppend("audit", ["a"], 100);
    await eventually(async () => (await ledgerOn(server.port, "restart:"))?.counters === "5", 5_000, 50);

    await server.restart();
    await eventually(async () => changes.length > 0, 15_000, 100);
    expect(changes).toEqual([{ atRisk: { admits: 0, counters: 5, stream: 1, records: 0 }, ledgerFound: false }]);
  }, 30_000);
});
