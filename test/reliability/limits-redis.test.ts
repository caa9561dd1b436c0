/**
 * Limits that must hold across router instances sharing only Redis: two router OS
 * processes (`node router/src/main.ts`) against one real Redis and the stack's key
 * service. Also: a tenant flooding at ten times its limit leaves another tenant's
 * success rate unchanged; usage survives a router restart; and with Redis cut off a
 * router limits locally, says so in its metrics, and never misroutes.
 */
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisStore } from "@portcullis/shared";
import { TEST_REDIS_URL } from "../helpers/env.ts";
import { type RouterProcess, spawnRouter } from "../helpers/router-process.ts";
import { eventually, startTestStack, type TestStack } from "../helpers/stack.ts";
import { TcpProxy } from "../helpers/tcp-proxy.ts";

type Tenant = Awaited<ReturnType<TestStack["tenant"]>>;

async function get(port: number, host: string): Promise<number> {
  const res = await request(`http://127.0.0.1:${port}/`, { headers: { host } });
  await res.body.dump();
  return res.statusCode;
}

/** Send `total` requests at `perSecond`, spread over the ports, without waiting for answers to send the next. */
async function paced(ports: number[], host: string, perSecond: number, total: number): Promise<number[]> {
  const out: Promise<number>[] = [];
  const started = performance.now();
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    out.push(get(ports[i % ports.length] as number, host).catch(() => 0));
  }
  return Promise.all(out);
}

const count = (codes: number[], status: number) => codes.filter((c) => c === status).length;

describe("limits across router processes sharing one Redis", () => {
  let stack: TestStack;
  let a: RouterProcess;
  let b: RouterProcess;

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real", routers: 0 });
    [a, b] = await Promise.all([spawnRouter(stack), spawnRouter(stack)]);
  });
  afterAll(async () => {
    await Promise.all([a?.kill(), b?.kill()]);
    await stack?.close();
  });

  async function tenant(slug: string, patch: Record<string, unknown>, plan?: string): Promise<Tenant> {
    const t = await stack.tenant(slug, plan ? { plan } : {});
    if (Object.keys(patch).length > 0) {
      const res = await stack.admin("PATCH", `/v1/tenants/${slug}`, patch);
      expect(res.status, res.text).toBe(200);
      await stack.cp.publisher.flush();
    }
    return t;
  }

  it("one tenant's rate limit holds across both processes (not once per process)", async () => {
    const t = await tenant("shared", { limits: { requestsPerSecond: 0.5, burst: 10 } });
    const started = performance.now();
    const codes: number[] = [];
    // Waves of concurrent requests, alternating between the two processes.
    for (let wave = 0; wave < 4; wave++) {
      codes.push(...(await Promise.all(Array.from({ length: 10 }, (_, i) => get(i % 2 ? a.port : b.port, t.host)))));
    }
    const elapsedS = (performance.now() - started) / 1000;
    const allowed = count(codes, 200);
    expect(count(codes, 200) + count(codes, 429)).toBe(40);
    expect(allowed).toBeGreaterThanOrEqual(10);
    // Two independent limiters would have let 20 or more through.
    expect(allowed).toBeLessThanOrEqual(10 + Math.ceil(elapsedS * 0.5) + 1);
    expect(t.upstream.requests.length).toBe(allowed);
  });

  it("a plan change and an override reach both processes within 1 s", async () => {
    const t = await tenant("replanned", {});
    const policy = async (port: number) => {
      const res = await request(`http://127.0.0.1:${port}/`, { headers: { host: t.host } });
      await res.body.dump();
      return res.headers["ratelimit-policy"];
    };
    expect([await policy(a.port), await policy(b.port)]).toEqual(['"tenant";q=40;w=2', '"tenant";q=40;w=2']);
    expect((await stack.admin("PATCH", "/v1/tenants/replanned", { plan: "enterprise" })).status).toBe(200);
    const elapsed = await eventually(
      async () => (await policy(a.port)) === '"tenant";q=4000;w=2' && (await policy(b.port)) === '"tenant";q=4000;w=2',
      1_000,
    );
    expect(elapsed).toBeLessThan(1_000);
    expect((await stack.admin("PATCH", "/v1/tenants/replanned", { limits: { burst: 7, requestsPerSecond: 7 } })).status).toBe(
      200,
    );
    await eventually(
      async () => (await policy(a.port)) === '"tenant";q=7;w=1' && (await policy(b.port)) === '"tenant";q=7;w=1',
      1_000,
    );
  });

  it("the monthly quota is exact across both processes", async () => {
    const t = await tenant("quota2", { limits: { requestsPerSecond: null, monthlyRequests: 7 } });
    const codes = await Promise.all(Array.from({ length: 20 }, (_, i) => get(i % 2 ? a.port : b.port, t.host)));
    expect(count(codes, 200)).toBe(7);
    expect(count(codes, 429)).toBe(13);
    expect(t.upstream.requests.length).toBe(7);
  });

  it("a tenant flooding at ten times its limit leaves another tenant's success rate unchanged", async () => {
    const noisy = await tenant("noisy", { limits: { requestsPerSecond: 10, burst: 10 } });
    const quiet = await tenant("quiet", {}, "pro");
    const ports = [a.port, b.port];
    // Alone: the quiet tenant's baseline.
    const baseline = await paced(ports, quiet.host, 20, 30);
    // With the neighbour flooding at 100 requests per second (ten times its limit).
    const flood = paced(ports, noisy.host, 100, 250);
    const during = await paced(ports, quiet.host, 20, 30);
    const noisyCodes = await flood;
    expect(count(baseline, 200) / baseline.length).toBe(1);
    expect(count(during, 200) / during.length).toBe(count(baseline, 200) / baseline.length);
    // The neighbour was limited, and its refusals never reached its upstream.
    expect(count(noisyCodes, 429)).toBeGreaterThan(100);
    expect(noisy.upstream.requests.length).toBe(count(noisyCodes, 200));
    expect(quiet.upstream.requests.length).toBe(60);
  });

  it("usage counted by a router survives its restart (SIGTERM drains and flushes)", async () => {
    const t = await tenant("survivor", {});
    const c = await spawnRouter(stack);
    for (let i = 0; i < 6; i++) expect(await get(c.port, t.host)).toBe(200);
    expect(await c.stop()).toBe(0);
    const d = await spawnRouter(stack);
    try {
      for (let i = 0; i < 4; i++) expect(await get(d.port, t.host)).toBe(200);
      await eventually(async () => (await stack.admin("GET", "/v1/tenants/survivor/usage")).json().requests === 10, 5_000, 100);
    } finally {
      await d.stop();
    }
    const usage = (await stack.admin("GET", "/v1/tenants/survivor/usage")).json();
    expect(usage.requests).toBe(10);
    expect(usage.refused).toBe(0);
    expect(usage.bytesOut).toBeGreaterThan(0);
  });
});

describe("Redis unreachable: the limiter goes local, visibly, and never misroutes", () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real", routers: 0 });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("limits from router memory while Redis is cut off, reports it in /metrics, and recovers", async () => {
    const url = new URL(TEST_REDIS_URL);
    const relay = await new TcpProxy(url.hostname, Number(url.port || 6379)).start();
    const store = new RedisStore({ url: `redis://127.0.0.1:${relay.port}`, prefix: stack.prefix });
    await store.ready();
    const router = await stack.addRouter({}, { store });
    const metrics = async () => {
      const res = await request(`http://127.0.0.1:${router.opsPort}/metrics`);
      return res.body.text();
    };
    try {
      const acme = await stack.tenant("acme");
      const limited = await stack.tenant("limited");
      await stack.admin("PATCH", "/v1/tenants/limited", { limits: { requestsPerSecond: 0.2, burst: 3 } });
      await stack.cp.publisher.flush();
      // Warm the router's memory for both tenants, using one of limited's three requests.
      expect((await stack.request(acme.host, "/", {}, router)).status).toBe(200);
      expect((await stack.request(limited.host, "/", {}, router)).status).toBe(200);
      expect(await metrics()).toMatch(/^portcullis_limiter_degraded 0$/m);

      await relay.stop();
      // Each tenant still reaches only its own upstream.
      for (let i = 0; i < 3; i++) {
        const res = await stack.request(acme.host, "/", {}, router);
        expect(res.status).toBe(200);
        expect(res.json().app).toBe("acme-app");
      }
      // The local limiter starts from a full bucket: three more, then 429.
      const codes = [];
      for (let i = 0; i < 5; i++) codes.push((await stack.request(limited.host, "/", {}, router)).status);
      expect(codes).toEqual([200, 200, 200, 429, 429]);
      expect(limited.upstream.requests.every((r) => r.headers["x-tenant-slug"] === "limited")).toBe(true);
      const text = await metrics();
      expect(text).toMatch(/^portcullis_limiter_degraded 1$/m);
      expect(Number(/^portcullis_limiter_store_errors_total (\d+)$/m.exec(text)?.[1])).toBeGreaterThan(0);
      expect(Number(/^portcullis_limiter_local_decisions_total (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(8);

      await relay.start();
      await eventually(
        async () => {
          await stack.request(acme.host, "/", {}, router);
          return /^portcullis_limiter_degraded 0$/m.test(await metrics());
        },
        10_000,
        200,
      );
    } finally {
      await relay.stop();
      await store.close();
    }
  });
});
