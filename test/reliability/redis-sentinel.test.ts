/**
 * Redis through Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_NAME): a master, a replica
 * and three sentinels of the test's own, the control plane and key service on them,
 * two router processes given only the sentinels. The master is killed: the sentinels
 * promote the replica, and every process follows it — routing, invalidations (the
 * subscription is made again on the new master), rate limits and the audit trail carry
 * on, with no restart.
 */
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { parseHostPorts, RedisStore } from "@portcullis/shared";
import { type RouterProcess, sharedLimitSample, spawnRouter } from "../helpers/router-process.ts";
import { type SentinelDeployment, startSentinels } from "../helpers/redis-sentinel.ts";
import { eventually, propagatesWithin, startTestStack, type TestStack } from "../helpers/stack.ts";
import { RedisServer } from "../helpers/redis-server.ts";
import { TcpProxy } from "../helpers/tcp-proxy.ts";

/** One request, bounded: a router that does not answer within 5 s counts as status 0. */
async function get(port: number, host: string, headers: Record<string, string> = {}) {
  try {
    const res = await request(`http://127.0.0.1:${port}/`, {
      headers: { host, ...headers },
      headersTimeout: 5_000,
      bodyTimeout: 5_000,
    });
    await res.body.dump();
    return { status: res.statusCode, requestId: String(res.headers["x-request-id"] ?? "") };
  } catch {
    return { status: 0, requestId: "" };
  }
}

describe("Redis through Sentinel, across a failover of the master", () => {
  let redis: SentinelDeployment;
  let stack: TestStack;
  let routers: RouterProcess[] = [];

  beforeAll(async () => {
    redis = await startSentinels();
    const connection = { sentinels: parseHostPorts(redis.list), sentinelName: redis.name };
    stack = await startTestStack({ backend: "real", routers: 0, audit: "stream", redis: connection });
    const env = { REDIS_URL: "", REDIS_SENTINELS: redis.list, REDIS_SENTINEL_NAME: redis.name };
    routers = await Promise.all([spawnRouter(stack, env), spawnRouter(stack, env)]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(routers.map((r) => r.kill()));
    await stack?.close();
    await redis?.close();
  });

  it("routes, invalidates, limits and audits before and after the master dies", async () => {
    const acme = await stack.tenant("acme");
    for (const r of routers) expect((await get(r.port, acme.host)).status).toBe(200);
    const before = await redis.masterPort();
    expect(before).toBe(redis.master.port);

    // The master dies; the sentinels promote the replica.
    await redis.master.kill();
    const failedOver = await eventually(async () => (await redis.masterPort()) === redis.replica.port, 20_000, 100);

    // Warm tenants were served meanwhile from memory. Every change made now reaches both
    // routers within the 10 s an entry is trusted in memory, even while a router's
    // subscription is still being made again; once it is, within a second, through the
    // new master.
    const took: number[] = [];
    for (let round = 0; round < 6 && !took.some((ms) => ms < 1_000); round++) {
      for (const [status, expected] of [
        ["suspended", 403],
        ["active", 200],
      ] as const) {
        await eventually(async () => (await stack.admin("PATCH", "/v1/tenants/acme", { status })).status === 200, 15_000, 200);
        took.push(
          await propagatesWithin(async () => {
            const answers = await Promise.all(routers.map((r) => get(r.port, acme.host)));
            return answers.every((a) => a.status === expected);
          }, 11_000),
        );
      }
    }
    expect(Math.min(...took), `propagation times after the failover: ${took.map(Math.round).join(", ")} ms`).toBeLessThan(1_000);

    // A tenant made after the failover is routed by both (a cold lookup through the new master).
    const late = await stack.tenant("late");
    for (const r of routers) await eventually(async () => (await get(r.port, late.host)).status === 200, 5_000, 50);

    // One rate limit for both routers, kept on the new master. A store error during the
    // failover keeps a router's limiter local (each router enforcing the whole limit)
    // for a second after it; a sample with any local decision is taken again, on a
    // tenant of its own, so that what is checked is the shared limit.
    const sampled = await sharedLimitSample(stack, routers, async (port, host) => (await get(port, host)).status, {
      slug: "limited",
      requestsPerSecond: 0.5,
      burst: 3,
      requests: 10,
    });
    expect(sampled, "a sample decided through Redis alone").not.toBeNull();
    const { passed, refused, seconds } = sampled as NonNullable<typeof sampled>;
    expect(passed + refused).toBe(10);
    expect(refused).toBeGreaterThan(0);
    // The burst once for both, plus what refilled meanwhile (0.5/s); never once per router (6).
    expect(passed).toBeLessThanOrEqual(Math.min(5, 3 + Math.ceil(seconds * 0.5)));

    // Decisions made after the failover reach the audit trail.
    const ids: string[] = [];
    for (const r of routers) ids.push((await get(r.port, acme.host)).requestId);
    for (const id of ids) expect(await stack.auditRows(id, 20_000), id).toHaveLength(1);
    // Each router saw one change of master and says so (what it may have lost: `redis-failover-ledger.test.ts`).
    for (const r of routers) expect(await r.metric("portcullis_redis_master_changes_total")).toBe(1);
    console.log(`sentinels promoted the replica ${Math.round(failedOver)} ms after the master died`);
  }, 90_000);
});

describe("a failover announced while a client is asking the sentinels for the master", () => {
  let redis: SentinelDeployment;
  const relays: TcpProxy[] = [];
  let store: RedisStore | null = null;

  beforeAll(async () => {
    redis = await startSentinels();
    for (const s of redis.sentinels) relays.push(await new TcpProxy("127.0.0.1", s.port).start());
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    for (const r of relays) await r.close();
    await redis?.close();
  });

  // ioredis ends a client for good when its failover detector (told "+switch-master"
  // by a sentinel) cuts short a reconnection attempt in flight: every later command is
  // refused, and a process that outlives the failover never reaches the new master.
  // The sentinels are reached through relays that hold every byte while the master
  // dies and the replica is promoted; released, the announcement (already waiting on
  // the subscription) reaches the client before the answer to its question can.
  it("still reaches the new master, for commands and for subscriptions", async () => {
    store = new RedisStore({
      sentinels: relays.map((r) => ({ host: "127.0.0.1", port: r.port })),
      sentinelName: redis.name,
      prefix: "sentinel-race:",
    });
    await store.ready();
    const heard: string[] = [];
    let resets = 0;
    await store.subscribe(
      "events",
      (m) => heard.push(m),
      () => resets++,
    );
    expect(await store.setIfNewer("k", "before", 1, 60_000, "authoritative")).toBe(true);

    await redis.master.kill();
    for (const r of relays) r.blackhole();
    await eventually(async () => (await redis.masterPort()) === redis.replica.port, 20_000, 100);
    // The client is by now asking a sentinel (through a held relay) where the master is.
    await new Promise((r) => setTimeout(r, 300));
    for (const r of relays) r.heal();

    const written = async () => {
      try {
        return await store!.setIfNewer("k", "after", 2, 60_000, "authoritative");
      } catch {
        return false;
      }
    };
    await eventually(written, 10_000, 100);
    const direct = new Redis({ port: redis.replica.port, lazyConnect: true });
    try {
      expect(await direct.get("sentinel-race:k")).toContain("after");
      // The subscription was made again on the new master too.
      await eventually(
        async () => {
          await direct.publish("sentinel-race:events", "on the new master");
          return heard.includes("on the new master");
        },
        10_000,
        200,
      );
    } finally {
      direct.disconnect();
    }
    expect(resets).toBeGreaterThan(0);
  }, 60_000);
});

describe("REDIS_AUDIT_REPLICAS: an audit append counts once a replica has it", () => {
  let master: RedisServer;
  let replica: RedisServer;
  const stores: RedisStore[] = [];

  beforeAll(async () => {
    master = await RedisServer.start();
    replica = await RedisServer.start(undefined, ["--replicaof", "127.0.0.1", String(master.port)]);
    await eventually(
      async () => {
        const client = new Redis(replica.url);
        const info = await client.info("replication").finally(() => client.disconnect());
        return info.includes("master_link_status:up");
      },
      10_000,
      100,
    );
  }, 30_000);
  afterAll(async () => {
    for (const s of stores) await s.close();
    await replica?.stop();
    await master?.stop();
  });

  it("refuses to call a batch written while no replica has it, so that it is appended again", async () => {
    const waiting = new RedisStore({ url: master.url, prefix: "wait:", streamReplicas: 1 });
    const plain = new RedisStore({ url: master.url, prefix: "plain:" });
    stores.push(waiting, plain);
    await Promise.all([waiting.ready(), plain.ready()]);
    expect(await waiting.streamAppend("audit", ["a"], 100)).toBe(1);

    // The replica stops answering: what the master takes now would die with it.
    replica.pause();
    await expect(waiting.streamAppend("audit", ["b"], 100)).rejects.toThrow(/0 of 1 replicas/);
    // Without the setting the master's answer is enough.
    expect(await plain.streamAppend("audit", ["b"], 100)).toBe(1);

    replica.resume();
    expect(await waiting.streamAppend("audit", ["b"], 100)).toBe(1);
    // The replica has every append, the one refused included.
    const client = new Redis(replica.url);
    try {
      await eventually(async () => (await client.xlen("wait:audit")) === 3, 5_000, 50);
    } finally {
      client.disconnect();
    }
  }, 30_000);
});
