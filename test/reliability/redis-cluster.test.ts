/**
 * On a Redis Cluster (REDIS_CLUSTER_NODES, the `cluster` project of vitest.config.ts:
 * three masters of its own). The other suites of that project hold the product to the
 * same tests as on one Redis; this one checks that they really ran on a cluster —
 * a tenant's records, limit counters and usage spread over the masters, each script on
 * one slot — and that a router process given only the cluster's nodes routes, checks
 * API keys and keeps a rate limit shared with another.
 */
import { Redis } from "ioredis";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_REDIS_CLUSTER_NODES } from "../helpers/env.ts";
import { type RouterProcess, spawnRouter } from "../helpers/router-process.ts";
import { startTestStack, type TestStack } from "../helpers/stack.ts";

async function get(port: number, host: string, headers: Record<string, string> = {}) {
  const res = await request(`http://127.0.0.1:${port}/`, { headers: { host, ...headers } });
  await res.body.dump();
  return res.statusCode;
}

/** Every key under `prefix` on one node. */
async function keysOn(node: string, prefix: string): Promise<string[]> {
  const redis = new Redis(`redis://${node}`);
  try {
    const out: string[] = [];
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      out.push(...keys);
      cursor = next;
    } while (cursor !== "0");
    return out;
  } finally {
    redis.disconnect();
  }
}

describe("the stack on a Redis Cluster of three masters", () => {
  let stack: TestStack;
  let routers: RouterProcess[] = [];

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real", routers: 0, audit: "stream" });
    // Router processes given REDIS_CLUSTER_NODES and no REDIS_URL (router-process.ts).
    routers = await Promise.all([spawnRouter(stack), spawnRouter(stack)]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(routers.map((r) => r.kill()));
    await stack?.close();
  });

  it("runs on the cluster: the store is sharded and the keys lie on every master", async () => {
    expect(TEST_REDIS_CLUSTER_NODES.split(",")).toHaveLength(3);
    expect(stack.store.sharded).toBe(true);
    for (let i = 0; i < 12; i++) {
      const t = await stack.tenant(`spread-${i}`);
      expect(await get(routers[i % 2]!.port, t.host)).toBe(200);
    }
    const perNode = await Promise.all(TEST_REDIS_CLUSTER_NODES.split(",").map((node) => keysOn(node, stack.prefix)));
    for (const keys of perNode) expect(keys.length).toBeGreaterThan(0);
  });

  it("routes by host and by API key, refuses another tenant's key, and keeps one rate limit for two routers", async () => {
    const acme = await stack.tenant("acme");
    const globex = await stack.tenant("globex");
    const created = await stack.admin("POST", "/v1/tenants/acme/keys", {});
    expect(created.status).toBe(201);
    await stack.cp.publisher.flush();
    const key = created.json().key as string;
    const bearer = { authorization: `Bearer ${key}` };
    expect(await get(routers[0]!.port, "api.localhost", bearer)).toBe(200);
    expect(acme.upstream.requests.length).toBeGreaterThan(0);
    const globexBefore = globex.upstream.requests.length;
    expect(await get(routers[1]!.port, globex.host, bearer)).toBe(401);
    expect(globex.upstream.requests.length).toBe(globexBefore);

    expect((await stack.admin("PATCH", "/v1/tenants/globex", { limits: { requestsPerSecond: 0.5, burst: 4 } })).status).toBe(200);
    await stack.cp.publisher.flush();
    const started = performance.now();
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push(await get(routers[i % 2]!.port, globex.host));
    const seconds = (performance.now() - started) / 1000;
    const passed = statuses.filter((s) => s === 200).length;
    expect(statuses.filter((s) => s === 429).length).toBe(12 - passed);
    // The burst once for both routers (plus what refilled), never once per router (8).
    expect(passed).toBeLessThanOrEqual(Math.min(7, 4 + Math.ceil(seconds * 0.5)));
    expect(passed).toBeGreaterThanOrEqual(4);
  });
});
