/**
 * Multi-process mode (ROUTER_WORKERS=2, router/src/cluster.ts) as an operator runs it:
 * `node router/src/main.ts` against the test stack's key service, real Redis and
 * Postgres. Connections are spread over two worker processes, the ops port reports
 * their metrics summed, a worker that dies is replaced while the others keep serving,
 * SIGTERM drains every worker (a request in flight completes) and the primary exits 0;
 * and the settings refuse what cannot work.
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadRouterConfig } from "@portcullis/router";
import { type RouterProcess, spawnRouter } from "../helpers/router-process.ts";
import { eventually, SECRETS, startTestStack, type TestStack } from "../helpers/stack.ts";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Worker process ids of a primary (Linux /proc). */
function workersOf(pid: number): number[] {
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
  return text === "" ? [] : text.split(" ").map(Number);
}

/** One request on a connection of its own (the primary hands out connections, not requests). */
async function fresh(port: number, host: string, path = "/"): Promise<{ status: number; body: string }> {
  const res = await request(`http://127.0.0.1:${port}${path}`, { headers: { host, connection: "close" }, reset: true });
  return { status: res.statusCode, body: await res.body.text() };
}

/** The `/metrics` lines of a family with these labels, by their `worker` label. */
async function perWorker(opsPort: number, family: string, labels: string): Promise<Map<string, number>> {
  const res = await request(`http://127.0.0.1:${opsPort}/metrics`);
  const out = new Map<string, number>();
  for (const line of (await res.body.text()).split("\n")) {
    if (!line.startsWith(`${family}{`) || !line.includes(labels)) continue;
    const worker = /worker="(\d+)"/.exec(line)?.[1] ?? "none";
    out.set(worker, Number(line.slice(line.lastIndexOf(" ") + 1)));
  }
  return out;
}
const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

/**
 * Around the enclosing describe: a test stack whose tenant acme routes to an upstream
 * of the test's own (`/slow` answers after 800 ms), and `node router/src/main.ts` with
 * two workers in front of it.
 */
function withWorkers() {
  const f = {
    stack: undefined as unknown as TestStack,
    router: null as RouterProcess | null,
    /** Upstream connections seen, by the router-side source port. */
    sources: new Set<number>(),
    slowRequests: 0,
    /** The running router's worker processes. */
    workers() {
      return workersOf((f.router as RouterProcess).child.pid as number);
    },
    /** Starts `count` requests to `/slow`, each on a connection of its own; resolves once the upstream holds them all. */
    async slow(count: number) {
      const r = f.router as RouterProcess;
      const before = f.slowRequests;
      const inFlight = Array.from({ length: count }, () => fresh(r.port, "acme.localhost", "/slow"));
      await eventually(() => f.slowRequests === before + count, 5_000, 10);
      return inFlight;
    },
  };
  let upstream: Server | null = null;
  beforeAll(async () => {
    f.stack = await startTestStack({ backend: "real" });
    await f.stack.tenant("acme");
    const server = createServer((req, res) => {
      f.sources.add(req.socket.remotePort ?? 0);
      if (req.url === "/slow") {
        f.slowRequests++;
        setTimeout(() => res.end("slow but complete"), 800);
        return;
      }
      res.end("ok");
    });
    upstream = server;
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const put = await f.stack.admin("PUT", "/v1/tenants/acme/upstreams", {
      urls: [`http://127.0.0.1:${(server.address() as AddressInfo).port}`],
    });
    expect(put.status).toBe(200);
    f.router = await spawnRouter(f.stack, { ROUTER_WORKERS: "2" });
  });
  afterAll(async () => {
    await f.router?.kill();
    upstream?.closeAllConnections();
    upstream?.close();
    await f.stack?.close();
  });
  return f;
}

describe("multi-process mode", () => {
  const f = withWorkers();

  it("spreads connections over two worker processes and sums their metrics on the ops port", async () => {
    const r = f.router as RouterProcess;
    expect(f.workers()).toHaveLength(2);
    const allowed = () => perWorker(r.opsPort, "portcullis_decisions_total", 'decision="allow",reason="allowed"');
    const before = sum(await allowed());
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await fresh(r.port, "acme.localhost")).status);
    expect(statuses).toEqual(Array(20).fill(200));
    // Sequential requests through one process reuse one upstream connection; each
    // worker keeps its own pool, so two processes served them.
    expect(f.sources.size).toBeGreaterThanOrEqual(2);
    // Each worker's series under its own `worker` label, together the 20 requests.
    const after = await allowed();
    expect([...after.keys()].sort()).toEqual(["1", "2"]);
    expect(sum(after) - before).toBe(20);
    const ready = await request(`http://127.0.0.1:${r.opsPort}/readyz`);
    expect(ready.statusCode).toBe(200);
    expect(await ready.body.json()).toEqual({ ready: true, workers: 2 });
    // Still fail closed in every worker: an unknown host reaches no upstream.
    const seen = f.sources.size;
    for (let i = 0; i < 4; i++) expect((await fresh(r.port, "nobody.localhost")).status).toBe(404);
    expect(f.sources.size).toBe(seen);
  });

  it("replaces a worker that dies, and the other keeps serving meanwhile", async () => {
    const r = f.router as RouterProcess;
    const pid = r.child.pid as number;
    const [victim, survivor] = f.workers() as [number, number];
    const counted = await perWorker(r.opsPort, "portcullis_decisions_total", 'decision="allow",reason="allowed"');
    // The ops port is asked all along: a worker's channel closing under a question
    // must not take the primary down.
    let asking = true;
    const ops = (async () => {
      let answered = 0;
      while (asking) {
        for (const path of ["/metrics", "/readyz"]) {
          const res = await request(`http://127.0.0.1:${r.opsPort}${path}`);
          await res.body.dump();
          answered++;
        }
      }
      return answered;
    })();
    try {
      process.kill(victim, "SIGKILL");
      const statuses: number[] = [];
      for (let i = 0; i < 10; i++) statuses.push((await fresh(r.port, "acme.localhost")).status);
      expect(statuses).toEqual(Array(10).fill(200));
      // Until the primary reaps it, the victim is still listed among its children: the
      // list is complete once it is gone and its replacement is there.
      await eventually(() => f.workers().length === 2 && !f.workers().includes(victim), 10_000, 50);
      const now = f.workers();
      expect(now).toContain(survivor);
      expect(now).not.toContain(victim);
      await eventually(async () => (await request(`http://127.0.0.1:${r.opsPort}/readyz`)).statusCode === 200, 10_000, 50);
    } finally {
      // Also when an expectation above fails: the loop must not outlive the test.
      asking = false;
    }
    expect(await ops).toBeGreaterThanOrEqual(2);
    expect(alive(pid)).toBe(true);
    expect((await fresh(r.port, "acme.localhost")).status).toBe(200);
    // The replacement takes the dead worker's slot (no third label); the survivor's
    // counter did not go down.
    const later = await perWorker(r.opsPort, "portcullis_decisions_total", 'decision="allow",reason="allowed"');
    for (const slot of later.keys()) expect(["1", "2"]).toContain(slot);
    const grew = [...counted].filter(([slot, n]) => (later.get(slot) ?? 0) >= n + 1);
    expect(grew.length).toBeGreaterThanOrEqual(1);
  });

  it("drains every worker on SIGTERM: the request in flight completes, then the primary exits 0", async () => {
    const r = f.router as RouterProcess;
    const workers = f.workers();
    const [inFlight] = await f.slow(1);
    const code = r.stop();
    await eventually(
      async () => {
        const res = await request(`http://127.0.0.1:${r.opsPort}/readyz`).catch(() => null);
        return res === null || res.statusCode === 503;
      },
      5_000,
      10,
    );
    expect(await inFlight).toEqual({ status: 200, body: "slow but complete" });
    expect(await code).toBe(0);
    for (const w of workers) expect(alive(w)).toBe(false);
    f.router = null;
  });
});

describe("multi-process mode, stopped by a supervisor that signals the whole process group", () => {
  const f = withWorkers();

  it("drains when every process gets SIGTERM, workers first, then twice more: requests in flight complete, exit 0", async () => {
    const r = f.router as RouterProcess;
    const pid = r.child.pid as number;
    const workers = f.workers();
    // Two requests on connections of their own: with two workers, likely one each.
    const inFlight = await f.slow(2);
    for (const w of workers) process.kill(w, "SIGTERM");
    const code = r.stop();
    // A supervisor repeating itself: a second signal must not cut the drain short.
    await new Promise((res) => setTimeout(res, 50));
    for (const p of [...workers, pid])
      try {
        process.kill(p, "SIGTERM");
      } catch {
        // Already gone: nothing was in flight there.
      }
    expect(await Promise.all(inFlight)).toEqual([
      { status: 200, body: "slow but complete" },
      { status: 200, body: "slow but complete" },
    ]);
    expect(await code).toBe(0);
    f.router = null;
  });
});

describe("multi-process mode, when its primary dies", () => {
  const f = withWorkers();

  it("every worker drains: the request in flight completes, then the workers exit", async () => {
    const r = f.router as RouterProcess;
    const workers = f.workers();
    const [inFlight] = await f.slow(1);
    await r.kill();
    expect(await inFlight).toEqual({ status: 200, body: "slow but complete" });
    await eventually(() => workers.every((w) => !alive(w)), 10_000, 20);
    f.router = null;
  });
});

describe("multi-process mode, a worker failing while it drains", () => {
  const f = withWorkers();

  it("makes the primary exit 1", async () => {
    const r = f.router as RouterProcess;
    const workers = f.workers();
    const inFlight = await f.slow(2);
    const code = r.stop();
    await new Promise((res) => setTimeout(res, 100));
    // A worker with a request in flight is still draining: killed, it fails the stop.
    for (const w of workers) if (alive(w)) process.kill(w, "SIGKILL");
    await Promise.allSettled(inFlight);
    expect(await code).toBe(1);
    f.router = null;
  });
});

describe("multi-process mode, SIGINT during a drain", () => {
  const f = withWorkers();

  it("closes at once: the primary does not wait for the request in flight", async () => {
    const r = f.router as RouterProcess;
    const [request] = await f.slow(1);
    const inFlight = (request as Promise<{ status: number }>).then(
      (res) => res.status,
      () => "cut",
    );
    const code = r.stop();
    await new Promise((res) => setTimeout(res, 50));
    r.child.kill("SIGINT");
    // Cut, not drained (a drain would answer it with a 200 after 800 ms).
    expect(await inFlight).toBe("cut");
    expect(await code).toBe(0);
    f.router = null;
  });
});

describe("multi-process settings", () => {
  const base = { ...SECRETS, REDIS_URL: "redis://127.0.0.1:6379" };
  it("takes a number or auto, and refuses anything else", () => {
    expect(loadRouterConfig({ ...base }).workers).toBe(1);
    expect(loadRouterConfig({ ...base, ROUTER_WORKERS: "3" }).workers).toBe(3);
    expect(loadRouterConfig({ ...base, ROUTER_WORKERS: "auto" }).workers).toBeGreaterThanOrEqual(1);
    for (const bad of ["0", "-1", "1.5", "many", ""])
      expect(() => loadRouterConfig({ ...base, ROUTER_WORKERS: bad }), bad).toThrow(/ROUTER_WORKERS/);
  });

  it("refuses more than one worker without Redis", () => {
    const { REDIS_URL: _, ...noRedis } = base;
    expect(() => loadRouterConfig({ ...noRedis, ROUTER_WORKERS: "2" })).toThrow(
      /ROUTER_WORKERS: more than one router process needs REDIS_URL/,
    );
    expect(loadRouterConfig({ ...noRedis, ROUTER_WORKERS: "1" }).workers).toBe(1);
  });
});
