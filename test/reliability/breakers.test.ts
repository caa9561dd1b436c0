/**
 * No dependency can stall the request path. A Redis or key service that stops
 * answering (paused, black-holed) costs the first few calls their timeout; then its
 * circuit breaker opens and requests stop waiting on it at all: resolution goes to
 * the key service (or the stale entry, or 503), rate limits go local, audit and usage
 * stay queued. A probe finds the dependency back and closes the breaker.
 *
 * The command and call timeouts here are set long (seconds), so that a request that
 * still waited on the dead dependency would take that long: "answered well under the
 * timeout" tells a request that did not wait from one that did, however loaded the
 * machine is.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { MemoryStore, RedisStore } from "@portcullis/shared";
import { RedisServer } from "../helpers/redis-server.ts";
import { eventually, startTestStack, type TestStack } from "../helpers/stack.ts";
import { TcpProxy } from "../helpers/tcp-proxy.ts";

const TIMEOUT_MS = 4_000;

/** Accepts connections and never answers: a black-holed service. */
async function blackHole(port = 0): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - started };
}

async function metric(opsPort: number, name: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${opsPort}/metrics`);
  const text = await res.text();
  return text
    .split("\n")
    .filter((l) => l.startsWith(name))
    .join("\n");
}

describe("circuit breakers (real Redis servers, real key service, real Postgres)", () => {
  let stack: TestStack;
  let acme: Awaited<ReturnType<TestStack["tenant"]>>;
  let globex: Awaited<ReturnType<TestStack["tenant"]>>;
  let initech: Awaited<ReturnType<TestStack["tenant"]>>;

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real" });
    acme = await stack.tenant("acme");
    globex = await stack.tenant("globex");
    initech = await stack.tenant("initech");
  });
  afterAll(async () => {
    await stack?.close();
  });

  /** A router on a Redis server of its own (long command timeout), warmed with one request. */
  async function routerOnOwnRedis() {
    const redis = await RedisServer.start();
    const store = new RedisStore({ url: redis.url, prefix: stack.prefix, commandTimeoutMs: TIMEOUT_MS });
    await store.ready();
    const router = await stack.addRouter({}, { store });
    expect((await stack.request(acme.host, "/", {}, router)).status).toBe(200);
    const stop = async () => {
      redis.resume();
      await router.close();
      await store.close();
      await redis.stop();
    };
    return { redis, store, router, stop };
  }

  it("a paused Redis stops costing requests its timeout once the breaker opens; the probe closes it when Redis answers again", async () => {
    const { redis, store, router, stop } = await routerOnOwnRedis();
    try {
      expect(store.breaker.state).toBe("closed");

      redis.pause();
      // Nothing in memory: resolution asks Redis first. These wait out the command
      // timeout (the breaker learns the outage from them), then the key service answers.
      router.resolver.clear();
      const first = await Promise.all([1, 2, 3, 4].map(() => stack.request(acme.host, "/", {}, router)));
      for (const r of first) expect(r.status).toBe(200);
      expect(store.breaker.state).toBe("open");
      expect(await metric(router.opsPort, "portcullis_dependency_breaker_state")).toContain(
        'portcullis_dependency_breaker_state{dependency="redis"} 2',
      );

      // Open: nothing waits on Redis. Cold lookups and rate limits fail over at once;
      // every answer is the right tenant's. (This stack's audit goes to memory; the
      // audit queue over an outage is tested in test/audit/durability.test.ts.)
      const contacts = acme.upstream.requests.length;
      for (let i = 0; i < 10; i++) {
        router.resolver.clear();
        const { value, ms } = await timed(() => stack.request(i % 2 === 0 ? acme.host : globex.host, "/", {}, router));
        expect(value.status).toBe(200);
        expect(value.json().app).toBe(i % 2 === 0 ? "acme-app" : "globex-app");
        expect(ms).toBeLessThan(TIMEOUT_MS / 2);
      }
      expect(acme.upstream.requests.length).toBe(contacts + 5);
      expect(router.limiter.degraded).toBe(true);

      redis.resume();
      await eventually(() => store.breaker.state === "closed", 10_000, 50);
      // Back on the store: limits are shared again.
      await eventually(async () => {
        await stack.request(acme.host, "/", {}, router);
        return !router.limiter.degraded;
      }, 10_000);
    } finally {
      await stop();
    }
  });

  it("Redis killed and restarted empty: no request fails that the key service can answer, and the store is used again", async () => {
    const { redis, store, router, stop } = await routerOnOwnRedis();
    try {
      await redis.kill();
      for (let i = 0; i < 12; i++) {
        router.resolver.clear();
        const tenant = [acme, globex, initech][i % 3] as typeof acme;
        const res = await stack.request(tenant.host, "/", {}, router);
        expect(res.status).toBe(200);
        expect(res.json().app).toBe(`${tenant.slug}-app`);
      }
      expect(store.breaker.state).not.toBe("closed");
      await redis.restart();
      await eventually(() => store.breaker.state === "closed", 10_000, 50);
      // The empty Redis is filled again from what the router learns.
      router.resolver.clear();
      expect((await stack.request(globex.host, "/", {}, router)).status).toBe(200);
      await eventually(async () => (await keysIn(redis)) > 0, 5_000);
    } finally {
      await stop();
    }
  });

  it("a black-holed key service: uncached lookups get 503 at once after the breaker opens, never an upstream; cached ones are served; the probe finds it back", async () => {
    const relay = await new TcpProxy("127.0.0.1", stack.keyServicePort).start();
    // A router without Redis in its way: every miss goes to the key service.
    const router = await stack.addRouter(
      { keyServiceTimeoutMs: TIMEOUT_MS },
      { keyServiceUrl: `http://127.0.0.1:${relay.port}`, store: new MemoryStore() },
    );
    const port = relay.port;
    let hole: Awaited<ReturnType<typeof blackHole>> | null = null;
    try {
      expect((await stack.request(acme.host, "/", {}, router)).status).toBe(200);
      // The port released for a listener that accepts and never answers.
      await relay.close();
      hole = await blackHole(port);
      const contacts = stack.upstreamContacts;

      // Unknown to this router: waits for the key service, which never answers.
      const first = await Promise.all(["x1", "x2", "x3"].map((h) => stack.request(`${h}.localhost`, "/", {}, router)));
      for (const r of first) {
        expect(r.status).toBe(503);
        expect(r.json().error.code).toBe("resolution_unavailable");
      }
      expect(await breakerOf(router.opsPort)).toBe(2);

      for (const host of [globex.host, initech.host, "nobody.localhost"]) {
        const { value, ms } = await timed(() => stack.request(host, "/", {}, router));
        expect(value.status).toBe(503);
        expect(value.json().error.code).toBe("resolution_unavailable");
        expect(ms).toBeLessThan(TIMEOUT_MS / 2);
      }
      expect(stack.upstreamContacts).toBe(contacts);
      // Cached and fresh: served as usual.
      const cached = await stack.request(acme.host, "/", {}, router);
      expect(cached.status).toBe(200);
      expect(cached.json().app).toBe("acme-app");

      await hole.close();
      hole = null;
      await relay.start(port);
      await eventually(async () => (await breakerOf(router.opsPort)) === 0, 10_000, 50);
      const back = await stack.request(globex.host, "/", {}, router);
      expect(back.status).toBe(200);
      expect(back.json().app).toBe("globex-app");
    } finally {
      await hole?.close();
      await router.close();
      await relay.stop();
    }
  });
});

async function breakerOf(opsPort: number): Promise<number> {
  const line = await metric(opsPort, 'portcullis_dependency_breaker_state{dependency="key_service"}');
  return Number(line.split(" ").pop());
}

async function keysIn(redis: RedisServer): Promise<number> {
  const client = new Redis(redis.url);
  try {
    return await client.dbsize();
  } finally {
    client.disconnect();
  }
}
