/**
 * Sparse traffic admitted ahead while Redis stops answering (black-holed behind a TCP
 * relay): the charges time out, the limiter goes local and says so, nothing is left
 * owed, and no promise is left rejected without a handler (vitest fails the file on
 * one); when Redis answers again, charges reach it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisStore, type TenantRecord } from "@portcullis/shared";
import { type LimitOutcome, Limiter, PREFETCH_GAP_MS } from "@portcullis/router";
import { TEST_REDIS_URL } from "../helpers/env.ts";
import { deleteKeys, testPrefix } from "../helpers/redis.ts";
import { eventually } from "../helpers/stack.ts";
import { TcpProxy } from "../helpers/tcp-proxy.ts";

const tenants = (n: number): TenantRecord[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `ten_sparsefault${i}`,
    slug: `sf${i}`,
    status: "active",
    plan: "free",
    binding: null,
    upstreams: ["http://127.0.0.1:1"],
    limits: { requestsPerSecond: 20, burst: 40, monthlyRequests: 1_000_000, concurrency: null, maxBodyBytes: null },
    features: {},
    settings: { allowedIps: [], branding: {} },
  }));

describe("sparse admits while Redis stops answering", () => {
  let relay: TcpProxy;
  let store: RedisStore;
  const prefix = testPrefix();

  beforeAll(async () => {
    const target = new URL(TEST_REDIS_URL);
    relay = await new TcpProxy(target.hostname, Number(target.port || 6379)).start();
    store = new RedisStore({ url: `redis://127.0.0.1:${relay.port}`, prefix, commandTimeoutMs: 300 });
    await store.ready();
  });
  afterAll(async () => {
    await store?.close();
    await relay?.close();
    await deleteKeys(prefix);
  });

  it("times its charges out into local limits, owing nothing, and charges again once Redis answers", async () => {
    let now = 1_000_000;
    const limiter = new Limiter({ store, now: () => now });
    const all = tenants(200);
    const decide = async (r: LimitOutcome | Promise<LimitOutcome>) => (r instanceof Promise ? await r : r).ok;
    // Each tenant known: one request each through the store.
    expect((await Promise.all(all.map((t) => decide(limiter.check(t, undefined))))).every(Boolean)).toBe(true);

    relay.blackhole();
    now += PREFETCH_GAP_MS;
    // Sparse now: admitted ahead, their charges sent into the black hole.
    const ahead = all.map((t) => limiter.check(t, undefined));
    expect(ahead.every((r) => !(r instanceof Promise) && r.ok)).toBe(true);
    await limiter.settled();
    expect(limiter.degraded).toBe(true);
    for (const t of all) expect(limiter.owed(t.id)).toBe(0);

    relay.heal();
    // Past the fallback window, sparse again: admitted ahead? No — a failed charge
    // leaves no headroom, so each asks the store first, which answers again.
    await eventually(async () => {
      now += PREFETCH_GAP_MS;
      return (await decide(limiter.check(all[0]!, undefined))) && !limiter.degraded;
    }, 10_000);
    await limiter.close();
  });
});
