/**
 * A Redis Cluster losing a master (REDIS_CLUSTER_NODES): three masters with a replica
 * each, of the test's own; the control plane and two router processes on it. The node
 * that carries the invalidation subscriptions dies, and with it a master: the cluster
 * promotes that master's replica, the subscribers move to a live node (dropping their
 * caches), and routing, cold lookups, invalidation and a shared rate limit carry on.
 */
import { Redis } from "ioredis";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INVALIDATION_CHANNEL, parseHostPorts } from "@portcullis/shared";
import { type RedisClusterDeployment, startRedisCluster } from "../helpers/redis-cluster.ts";
import { type RouterProcess, sharedLimitSample, spawnRouter } from "../helpers/router-process.ts";
import { eventually, propagatesWithin, startTestStack, type TestStack } from "../helpers/stack.ts";

async function get(port: number, host: string): Promise<number> {
  try {
    const res = await request(`http://127.0.0.1:${port}/`, { headers: { host }, headersTimeout: 5_000, bodyTimeout: 5_000 });
    await res.body.dump();
    return res.statusCode;
  } catch {
    return 0;
  }
}

/** Subscribers of the invalidation channel on one node (PUBSUB NUMSUB is per node on a cluster). */
async function subscribersOn(port: number, channel: string): Promise<number> {
  const client = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0 });
  client.on("error", () => {});
  try {
    await client.connect();
    const answer = (await client.call("PUBSUB", "NUMSUB", channel)) as [string, number];
    return Number(answer[1]);
  } catch {
    return 0;
  } finally {
    client.disconnect();
  }
}

describe("a Redis Cluster master failing over to its replica", () => {
  let cluster: RedisClusterDeployment;
  let stack: TestStack;
  let routers: RouterProcess[] = [];

  beforeAll(async () => {
    cluster = await startRedisCluster(3, 1);
    stack = await startTestStack({
      backend: "real",
      routers: 0,
      audit: "stream",
      redis: { clusterNodes: parseHostPorts(cluster.list) },
    });
    const env = { REDIS_URL: "", REDIS_SENTINELS: "", REDIS_CLUSTER_NODES: cluster.list };
    routers = await Promise.all([spawnRouter(stack, env), spawnRouter(stack, env)]);
  }, 90_000);
  afterAll(async () => {
    await Promise.all(routers.map((r) => r.kill()));
    await stack?.close();
    await cluster?.close();
  });

  it("routes, invalidates and limits on after the subscribers' node and a master die", async () => {
    expect(stack.store.sharded).toBe(true);
    const tenants = [];
    for (let i = 0; i < 6; i++) tenants.push(await stack.tenant(`before-${i}`));
    for (const t of tenants) for (const r of routers) expect(await get(r.port, t.host)).toBe(200);

    // Where the subscriptions are (the control plane's and each router's: 3).
    const channel = stack.prefix + INVALIDATION_CHANNEL;
    const roles = await cluster.roles();
    const ports = [...roles.keys()];
    const counts = new Map<number, number>();
    for (const p of ports) counts.set(p, await subscribersOn(p, channel));
    expect([...counts.values()].reduce((a, b) => a + b, 0)).toBe(3);
    // Killed: one master (one holding subscriptions if any does; the two left are the
    // majority that elects its replica) and every replica holding subscriptions that
    // does not follow it (a master and its own replica: its slots would have no one).
    const isMaster = (p: number) => roles.get(p)?.role === "master";
    const held = (p: number) => counts.get(p) ?? 0;
    const masters = ports.filter(isMaster).sort((a, b) => held(b) - held(a));
    const victim = masters[0];
    if (victim === undefined) throw new Error(`no master among ${JSON.stringify([...roles])}`);
    const doomed = new Set([victim, ...ports.filter((p) => !isMaster(p) && held(p) > 0 && roles.get(p)?.of !== victim)]);
    const moved = [...doomed].reduce((n, p) => n + held(p), 0);
    expect(moved, `subscriptions on the killed nodes: ${JSON.stringify([...counts])}`).toBeGreaterThan(0);
    const killedMasters = [...doomed].filter(isMaster);
    const promoted = ports.filter((p) => killedMasters.includes(roles.get(p)?.of ?? -1));
    for (const node of cluster.nodes) if (doomed.has(node.port)) await node.kill();

    // The cluster promotes each dead master's replica.
    const tookMs = await eventually(
      async () => {
        const now = await cluster.roles();
        return promoted.every((p) => now.get(p)?.role === "master");
      },
      30_000,
      200,
    );
    // Every subscriber is on a live node again.
    await eventually(
      async () => {
        let n = 0;
        for (const p of ports.filter((x) => !doomed.has(x))) n += await subscribersOn(p, channel);
        return n === 3;
      },
      20_000,
      200,
    );

    // Warm tenants, and one made after the failover (a cold lookup on the new layout).
    for (const t of tenants)
      for (const r of routers) await eventually(async () => (await get(r.port, t.host)) === 200, 10_000, 100);
    const late = await stack.tenant("late");
    for (const r of routers) await eventually(async () => (await get(r.port, late.host)) === 200, 10_000, 100);

    // A change reaches both routers through the moved subscriptions within a second.
    const took: number[] = [];
    for (const [status, expected] of [
      ["suspended", 403],
      ["active", 200],
    ] as const) {
      for (const t of tenants.slice(0, 3)) {
        expect((await stack.admin("PATCH", `/v1/tenants/${t.slug}`, { status })).status).toBe(200);
        took.push(
          await propagatesWithin(
            async () => (await Promise.all(routers.map((r) => get(r.port, t.host)))).every((s) => s === expected),
            11_000,
          ),
        );
      }
    }
    expect(Math.max(...took), `propagation after the failover: ${took.map(Math.round).join(", ")} ms`).toBeLessThan(1_000);

    // One rate limit for both routers, on the new layout (decided through the cluster alone).
    const sampled = await sharedLimitSample(stack, routers, get, {
      slug: "limited",
      requestsPerSecond: 0.5,
      burst: 4,
      requests: 12,
    });
    expect(sampled, "a sample decided through Redis alone").not.toBeNull();
    const { passed, refused, seconds } = sampled as NonNullable<typeof sampled>;
    expect(passed + refused).toBe(12);
    // The burst once for both routers (plus what refilled), never once per router (8).
    expect(passed).toBeLessThanOrEqual(Math.min(7, 4 + Math.ceil(seconds * 0.5)));
    expect(passed).toBeGreaterThanOrEqual(4);
    console.log(
      `${moved} subscription(s) moved; cluster promoted ${promoted.length} replica(s) ${Math.round(tookMs)} ms after ${doomed.size} node(s) died`,
    );
  }, 120_000);
});
