/**
 * Redis is a cache, never the source of truth: flushed, it refills on demand; down,
 * routers serve what they hold only within the declared staleness, and refuse (503)
 * what they cannot resolve — never another tenant.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CACHE, RedisStore } from "@portcullis/shared";
import { TEST_REDIS_URL } from "../helpers/env.ts";
import { flushPrefix } from "../helpers/redis.ts";
import { startTestStack, type TestStack } from "../helpers/stack.ts";
import { TcpProxy } from "../helpers/tcp-proxy.ts";

describe("Redis as a cache (real Redis, real Postgres)", () => {
  let stack: TestStack;
  let acme: Awaited<ReturnType<TestStack["tenant"]>>;
  let globex: Awaited<ReturnType<TestStack["tenant"]>>;
  const redis = new Redis(TEST_REDIS_URL);

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real" });
    acme = await stack.tenant("acme");
    globex = await stack.tenant("globex");
  });
  afterAll(async () => {
    redis.disconnect();
    await stack?.close();
  });

  it("publishes records into Redis when the control plane writes", async () => {
    const host = await redis.get(`${stack.prefix}${CACHE.host.key(acme.host)}`);
    expect(JSON.parse(host ?? "null")?.tenantId).toBe(acme.id);
    const tenant = JSON.parse((await redis.get(`${stack.prefix}${CACHE.tenant.key(acme.id)}`)) ?? "null");
    expect(tenant?.tenant?.slug).toBe("acme");
  });

  it("refills a flushed Redis on demand", async () => {
    await flushPrefix(stack.prefix);
    expect(await redis.get(`${stack.prefix}${CACHE.host.key(acme.host)}`)).toBeNull();
    // A router that has nothing in memory resolves through the key service …
    const cold = await stack.addRouter();
    const res = await stack.request(acme.host, "/", {}, cold);
    expect(res.status).toBe(200);
    expect(res.json().app).toBe("acme-app");
    // … and puts what it learned back into Redis.
    const deadline = Date.now() + 1_000;
    let refilled: string | null = null;
    while (!refilled && Date.now() < deadline) {
      refilled = await redis.get(`${stack.prefix}${CACHE.host.key(acme.host)}`);
      if (!refilled) await new Promise((r) => setTimeout(r, 10));
    }
    expect(JSON.parse(refilled ?? "null")?.tenantId).toBe(acme.id);
    expect(await redis.get(`${stack.prefix}${CACHE.tenant.key(acme.id)}`)).not.toBeNull();
  });

  it("with Redis and the key service down, serves cached tenants only within the bounded staleness, and 503 otherwise", async () => {
    const url = new URL(TEST_REDIS_URL);
    const relay = await new TcpProxy(url.hostname, Number(url.port || 6379)).start();
    const ksRelay = await new TcpProxy("127.0.0.1", stack.keyServicePort).start();
    const store = new RedisStore({ url: `redis://127.0.0.1:${relay.port}`, prefix: stack.prefix });
    await store.ready();
    let offset = 0;
    const now = () => Date.now() + offset;
    const router = await stack.addRouter({}, { store, now, keyServiceUrl: `http://127.0.0.1:${ksRelay.port}` });
    try {
      expect((await stack.request(acme.host, "/", {}, router)).status).toBe(200);

      await relay.stop();
      await ksRelay.stop();
      const contacts = { acme: acme.upstream.requests.length, globex: globex.upstream.requests.length };

      // Fresh in memory: served.
      expect((await stack.request(acme.host, "/", {}, router)).json().app).toBe("acme-app");
      // Past freshness, within the maximum staleness: still served (nothing newer can be learned).
      offset = CACHE.host.freshMs + 1_000;
      const stale = await stack.request(acme.host, "/", {}, router);
      expect(stale.status).toBe(200);
      expect(stale.json().app).toBe("acme-app");
      // Never cached here: 503, never a guess, never another tenant.
      const unknown = await stack.request(globex.host, "/", {}, router);
      expect(unknown.status).toBe(503);
      expect(unknown.json().error.code).toBe("resolution_unavailable");
      // Past the maximum staleness: 503.
      offset = CACHE.host.maxStaleMs + 1_000;
      const expired = await stack.request(acme.host, "/", {}, router);
      expect(expired.status).toBe(503);
      expect(expired.json().error.code).toBe("resolution_unavailable");
      expect(acme.upstream.requests.length).toBe(contacts.acme + 2);
      expect(globex.upstream.requests.length).toBe(contacts.globex);

      // Service restored: resolution resumes.
      await ksRelay.start();
      await relay.start();
      offset = 0;
      router.resolver.clear();
      const back = Date.now() + 3_000;
      let status = 0;
      while (status !== 200 && Date.now() < back) {
        status = (await stack.request(globex.host, "/", {}, router)).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 50));
      }
      expect(status).toBe(200);
    } finally {
      await relay.stop();
      await ksRelay.stop();
      await store.close();
    }
  });

  it("with only the key service down (Postgres away), serves what Redis last held past its freshness, within its stale-if-error time", async () => {
    const ksRelay = await new TcpProxy("127.0.0.1", stack.keyServicePort).start();
    let offset = 0;
    const now = () => Date.now() + offset;
    const router = await stack.addRouter({}, { now, keyServiceUrl: `http://127.0.0.1:${ksRelay.port}` });
    try {
      expect((await stack.request(acme.host, "/", {}, router)).status).toBe(200);
      // The control plane wrote the record fresh for redisTtlMs and kept it longer.
      const key = `${stack.prefix}${CACHE.host.key(acme.host)}`;
      const stored = (await redis.get(key)) ?? "";
      expect(stored).toMatch(/,"freshUntil":\d+\}$/);
      expect(await redis.pttl(key)).toBeGreaterThan(CACHE.host.redisTtlMs);

      await ksRelay.stop();
      const contacts = acme.upstream.requests.length;
      // Past the memory entry's maximum staleness and the Redis entry's freshness: the
      // key service cannot answer, so the record Redis holds is served.
      offset = CACHE.host.redisTtlMs + CACHE.host.maxStaleMs + 1_000;
      const stale = await stack.request(acme.host, "/", {}, router);
      expect(stale.status).toBe(200);
      expect(stale.json().app).toBe("acme-app");
      // A host Redis never held: 503, never a guess.
      const unknown = await stack.request("never.example.test", "/", {}, router);
      expect(unknown.status).toBe(503);
      expect(unknown.json().error.code).toBe("resolution_unavailable");
      // Past the stale-if-error time (by the router's clock): 503, and nothing forwarded.
      offset = CACHE.host.redisTtlMs + CACHE.host.redisStaleIfErrorMs + 1_000;
      router.resolver.clear();
      const expired = await stack.request(acme.host, "/", {}, router);
      expect(expired.status).toBe(503);
      expect(expired.json().error.code).toBe("resolution_unavailable");
      expect(acme.upstream.requests.length).toBe(contacts + 1);

      // The key service back: asked again, and the tenant served from its answer.
      await ksRelay.start();
      offset = 0;
      router.resolver.clear();
      expect((await stack.request(acme.host, "/", {}, router)).status).toBe(200);
    } finally {
      await ksRelay.stop();
    }
  });
});
