/**
 * Upstream failures: passive health ejects an
 * origin after consecutive failures and re-admits it after a back-off; a request is
 * retried on another origin only when it never reached an app (connect error), or
 * when it is idempotent, body-less and its connection failed before any response
 * byte; every origin down is a 502/504 refusal body; a black-holed origin costs a
 * timeout, never a stuck connection, and nothing once ejected.
 *
 * Real upstream servers on port 0. The first part goes through a whole router; the
 * second drives both forwarding clients (h1 and undici) with the same cases, so they
 * cannot drift apart. Timeouts are 300 ms; time bounds are generous (seconds).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from "node:net";
import { Worker } from "node:worker_threads";
import type { RunningRouter } from "@portcullis/router";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeRefusal } from "../../router/src/errors.ts";
import { createUpstreamClient, type ForwardRequest, UpstreamHealth } from "../../router/src/proxy/index.ts";
import { send } from "../helpers/http.ts";
import { refusedUrl } from "../helpers/ports.ts";
import { eventually, startTestStack, type TestStack } from "../helpers/stack.ts";

const TIMEOUTS = { connectTimeoutMs: 300, headersTimeoutMs: 300, bodyTimeoutMs: 2_000, connections: 16 };
/** Long enough that no origin comes back during a test that counts its hits. */
const LONG_EJECTION = { consecutiveFailures: 3, baseEjectionMs: 60_000, maxEjectionMs: 60_000 };
const SHORT_EJECTION = { consecutiveFailures: 3, baseEjectionMs: 500, maxEjectionMs: 1_000 };

type Upstream = Server & { url: string; hits: number; bodies: string[] };

const closers: (() => unknown)[] = [];

function serve(handler: (req: IncomingMessage, res: ServerResponse) => void, port = 0): Promise<Upstream> {
  const server = createServer((req, res) => {
    server.hits++;
    handler(req, res);
  }) as Upstream;
  server.hits = 0;
  server.bodies = [];
  closers.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return new Promise((resolve) =>
    server.listen(port, "127.0.0.1", () => {
      server.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      resolve(server);
    }),
  );
}

/** Answers 200 with `text`, after reading the request body (kept in `bodies`). */
async function ok(text: string): Promise<Upstream> {
  const bodies: string[] = [];
  const server = await serve((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      body += c;
    });
    req.on("end", () => {
      bodies.push(body);
      res.end(text);
    });
  });
  server.bodies = bodies;
  return server;
}

/** Reads the request, then resets the connection without a response byte. */
const resetter = () =>
  serve((req) => {
    req.resume();
    req.on("end", () => req.socket.destroy());
  });

/** A URL nothing listens on: connections are refused. */
const deadUrl = refusedUrl;

/** Accepts connections and never writes a byte; counts the sockets still open. */
async function silent(): Promise<{ url: string; open: () => number; accepted: () => number }> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createTcpServer((s) => {
    accepted++;
    sockets.add(s);
    // Read (and drop) what comes: a paused socket would never see the peer's close.
    s.resume();
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
  });
  closers.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    open: () => sockets.size,
    accepted: () => accepted,
  };
}

/**
 * A listening socket whose accept queue is full: connecting hangs (the kernel drops
 * the SYNs). The listener lives in a worker whose event loop is blocked, so nothing
 * ever accepts; the queue is filled by a few sockets of our own.
 */
async function connectHang(): Promise<string> {
  const flag = new SharedArrayBuffer(4);
  const worker = new Worker(
    `const { workerData, parentPort } = require("node:worker_threads");
     const server = require("node:net").createServer(() => {});
     server.listen({ port: 0, host: "127.0.0.1", backlog: 1 }, () => {
       parentPort.postMessage(server.address().port);
       Atomics.wait(new Int32Array(workerData), 0, 0);
       server.close();
       process.exit(0);
     });`,
    { eval: true, workerData: flag },
  );
  worker.unref();
  const port = (await new Promise((r) => worker.once("message", r))) as number;
  const fillers: Socket[] = [];
  for (let i = 0; i < 8; i++) {
    const socket = connect(port, "127.0.0.1");
    socket.on("error", () => {});
    fillers.push(socket);
    const connected = await new Promise<boolean>((r) => {
      socket.once("connect", () => r(true));
      setTimeout(() => r(false), 200);
    });
    if (!connected) break;
  }
  closers.push(() => {
    for (const s of fillers) s.destroy();
    const f = new Int32Array(flag);
    Atomics.store(f, 0, 1);
    Atomics.notify(f, 0);
  });
  return `http://127.0.0.1:${port}`;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - started };
}

/** A sample of the router's /metrics: `name` with exactly `labels` (e.g. `{reason="connect_error"}`), 0 when absent. */
async function metric(router: RunningRouter, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${router.opsPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

const failedTries = (router: RunningRouter, reason: string) =>
  metric(router, "portcullis_upstream_failed_tries_total", `{reason="${reason}"}`);
const ejections = (router: RunningRouter, reason: string) =>
  metric(router, "portcullis_upstream_ejections_total", `{reason="${reason}"}`);

afterAll(() => {
  for (const close of closers) close();
});

describe("upstream failures through the router (real Redis, real Postgres, real upstreams)", () => {
  let stack: TestStack;
  /** A second router whose ejections end after 500 ms (re-admission). */
  let quick: RunningRouter;

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real", router: { upstream: TIMEOUTS, upstreamHealth: LONG_EJECTION } });
    quick = await stack.addRouter({ upstreamHealth: SHORT_EJECTION });
  });
  afterAll(async () => {
    await stack?.close();
  });

  async function tenantWith(slug: string, urls: string[]): Promise<string> {
    await stack.tenant(slug);
    const res = await stack.admin("PUT", `/v1/tenants/${slug}/upstreams`, { urls });
    expect(res.status).toBe(200);
    await stack.cp.publisher.flush();
    return `${slug}.localhost`;
  }

  it("one of two origins refusing connections: every request succeeds, and the dead one is tried 3 times, then ejected", async () => {
    const alive = await ok("alive");
    const host = await tenantWith("refusing", [await deadUrl(), alive.url]);
    const tries = await failedTries(stack.router, "connect_error");
    const ejected = await ejections(stack.router, "connect_error");
    for (let i = 0; i < 20; i++) {
      const res = await stack.request(host);
      expect(res.status).toBe(200);
      expect(res.text).toBe("alive");
    }
    expect(alive.hits).toBe(20);
    // Connect attempts to the dead origin stop after the third.
    expect((await failedTries(stack.router, "connect_error")) - tries).toBe(3);
    expect((await ejections(stack.router, "connect_error")) - ejected).toBe(1);
    expect(await metric(stack.router, "portcullis_upstream_ejected_origins")).toBeGreaterThanOrEqual(1);
  });

  it("a POST with a body goes to another origin when the first refused the connection (nothing was sent)", async () => {
    const alive = await ok("alive");
    const host = await tenantWith("refusing-post", [await deadUrl(), alive.url]);
    // Consecutive requests start on consecutive origins: one of the two starts on the dead one.
    for (let i = 0; i < 2; i++) {
      const res = await stack.request(host, "/orders", { method: "POST", body: `order ${i}` });
      expect(res.status).toBe(200);
    }
    expect(alive.bodies.sort()).toEqual(["order 0", "order 1"]);
  });

  it("a dead origin that comes back is re-admitted after the back-off", async () => {
    const alive = await ok("alive");
    const dead = await deadUrl();
    const host = await tenantWith("comeback", [dead, alive.url]);
    const tries = await failedTries(quick, "connect_error");
    for (let i = 0; i < 6; i++) expect((await stack.request(host, "/", {}, quick)).status).toBe(200);
    // Ejected after three (more only if the machine is slow enough for an ejection to end meanwhile).
    expect((await failedTries(quick, "connect_error")) - tries).toBeGreaterThanOrEqual(3);
    expect(await metric(quick, "portcullis_upstream_ejected_origins")).toBe(1);
    // Back on the same port.
    const revived = await serve((_req, res) => res.end("revived"), Number(new URL(dead).port));
    await eventually(async () => (await stack.request(host, "/", {}, quick)).status === 200 && revived.hits > 0, 5_000, 20);
    // Admitted again: it takes its share of the rotation.
    const before = revived.hits;
    for (let i = 0; i < 10; i++) expect((await stack.request(host, "/", {}, quick)).status).toBe(200);
    expect(revived.hits - before).toBeGreaterThanOrEqual(4);
    expect(await metric(quick, "portcullis_upstream_ejected_origins")).toBe(0);
  });

  it("one origin answering 500s is ejected after 3; traffic goes to the healthy one", async () => {
    const bad = await serve((_req, res) => {
      res.statusCode = 500;
      res.end("broken");
    });
    const good = await ok("good");
    const host = await tenantWith("fivehundreds", [bad.url, good.url]);
    const ejected = await ejections(stack.router, "status_5xx");
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await stack.request(host)).status);
    // The 500s themselves reach the client (a response is never retried).
    expect(statuses.filter((s) => s === 500).length).toBe(3);
    expect(statuses.filter((s) => s === 200).length).toBe(17);
    expect(bad.hits).toBe(3);
    expect(good.hits).toBe(17);
    expect((await ejections(stack.router, "status_5xx")) - ejected).toBe(1);
  });

  it("a POST that reached an upstream is never retried, even when that upstream reset the connection", async () => {
    const flaky = await resetter();
    const second = await ok("second");
    const host = await tenantWith("post-once", [flaky.url, second.url]);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await stack.request(host, "/charge", { method: "POST", body: "charge the card once" });
      statuses.push(res.status);
      if (res.status === 502) expect(res.json().error.code).toBe("upstream_unavailable");
    }
    // Each POST reached exactly one upstream.
    expect(flaky.hits + second.hits).toBe(4);
    expect(flaky.hits).toBe(2);
    expect(statuses.sort()).toEqual([200, 200, 502, 502]);
  });

  it("a GET whose connection is reset after the request was written is retried on the other origin", async () => {
    const flaky = await resetter();
    const second = await ok("second");
    const host = await tenantWith("get-retried", [flaky.url, second.url]);
    for (let i = 0; i < 10; i++) {
      const res = await stack.request(host);
      expect(res.status).toBe(200);
      expect(res.text).toBe("second");
    }
    expect(second.hits).toBe(10);
    // Three resets eject it; after that it is not tried.
    expect(flaky.hits).toBe(3);
  });

  it("every origin down: 502 upstream_unavailable with the refusal body, for GET (h1) and POST (undici), also once all are ejected", async () => {
    const host = await tenantWith("all-down", [await deadUrl(), await deadUrl()]);
    const panics = await metric(stack.router, "portcullis_upstream_panic_total");
    for (let i = 0; i < 8; i++) {
      const res = i % 2 === 0 ? await stack.request(host) : await stack.request(host, "/", { method: "POST", body: "payload" });
      expect(res.status).toBe(502);
      expect(res.headers["content-type"]).toMatch(/^application\/json/);
      const body = res.json();
      expect(body.error.code).toBe("upstream_unavailable");
      expect(body.error.requestId).toBe(res.headers["x-request-id"]);
      expect(typeof body.error.message).toBe("string");
    }
    // Both ejected after the first requests: later ones try the one whose ejection ends first.
    expect((await metric(stack.router, "portcullis_upstream_panic_total")) - panics).toBeGreaterThan(0);
  });

  it("an origin that accepts and never answers costs a headers timeout (504), and its connections are closed", async () => {
    const hole = await silent();
    const host = await tenantWith("silent", [hole.url]);
    for (const method of ["GET", "POST"]) {
      const { value: res, ms } = await timed(() =>
        stack.request(host, "/", method === "POST" ? { method, body: "payload" } : { method }),
      );
      expect(res.status).toBe(504);
      expect(res.json().error.code).toBe("upstream_timeout");
      expect(res.json().error.requestId).toBe(res.headers["x-request-id"]);
      expect(ms).toBeLessThan(5_000);
    }
    // Never a stuck upstream connection.
    await eventually(() => hole.open() === 0, 3_000);
  });

  it("with a silent origin among two, it costs three timeouts, then nothing; the router answers other tenants meanwhile", async () => {
    const hole = await silent();
    const good = await ok("good");
    const host = await tenantWith("silent-pair", [hole.url, good.url]);
    const other = await tenantWith("bystander", [(await ok("bystander")).url]);
    // A request held by the silent origin does not hold anyone else.
    const held = stack.request(host, "/held");
    const { value: bystander, ms } = await timed(() => stack.request(other));
    expect(bystander.status).toBe(200);
    expect(ms).toBeLessThan(5_000);
    const statuses = [(await held).status];
    for (let i = 0; i < 15; i++) {
      const { value: res, ms } = await timed(() => stack.request(host));
      expect(ms).toBeLessThan(5_000);
      statuses.push(res.status);
    }
    // A GET the upstream accepted is not retried (it may be executing): 504, three times.
    expect(statuses.filter((s) => s === 504).length).toBe(3);
    expect(statuses.filter((s) => s === 200).length).toBe(13);
    expect(hole.accepted()).toBe(3);
    await eventually(() => hole.open() === 0, 3_000);
  });

  it("among two origins, one holding its requests (black-holed or slow) stops being chosen while it holds one, long before any timeout", async () => {
    // Timeouts far beyond the test: only what is in flight can steer the choice.
    const patient = await stack.addRouter({
      upstream: { ...TIMEOUTS, headersTimeoutMs: 30_000, bodyTimeoutMs: 30_000 },
      upstreamHealth: LONG_EJECTION,
    });
    const hole = await silent();
    const good = await ok("good");
    const host = await tenantWith("holding-pair", [hole.url, good.url]);
    const held: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      const before = hole.accepted();
      const pending = stack.request(host, `/r/${i}`, {}, patient).then(
        (res) => res.status,
        () => "cut",
      );
      // Either answered (by the good origin) or held by the silent one.
      let answered = false;
      void pending.then(() => {
        answered = true;
      });
      await eventually(() => answered || hole.accepted() > before, 5_000, 5);
      if (!answered) held.push(pending);
    }
    // Round robin alone would have sent every other request into the hole.
    expect(hole.accepted()).toBe(1);
    expect(held.length).toBe(1);
    expect(good.hits).toBe(19);
  });

  it("an origin whose connect hangs costs at most the connect timeout; among two, requests succeed and it is ejected", async () => {
    const hang = await connectHang();
    const alone = await tenantWith("hang-alone", [hang]);
    const { value: res, ms } = await timed(() => stack.request(alone));
    expect(res.status).toBe(504);
    expect(res.json().error.code).toBe("upstream_timeout");
    expect(ms).toBeLessThan(5_000);

    const good = await ok("good");
    const host = await tenantWith("hang-pair", [hang, good.url]);
    const tries = await failedTries(stack.router, "connect_error");
    for (let i = 0; i < 12; i++) {
      const { value: res, ms } = await timed(() => stack.request(host));
      expect(res.status).toBe(200);
      expect(ms).toBeLessThan(5_000);
    }
    expect(good.hits).toBe(12);
    // Health is per origin: hang-alone's try counted, so two more eject it.
    expect((await failedTries(stack.router, "connect_error")) - tries).toBe(2);
  });
});

describe("the upstream client, on its own", () => {
  let front: Server;
  let port: number;
  let rr = 0;
  const health = new UpstreamHealth({ ...LONG_EJECTION, probeWindowMs: 600 });
  const client = createUpstreamClient(TIMEOUTS);
  /** Origins of the next request, set by each case. */
  let origins: string[] = [];

  beforeAll(async () => {
    front = createServer((req, res) => {
      const hasBody = req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0";
      const f: ForwardRequest = {
        origins,
        start: rr++,
        method: req.method as string,
        path: req.url as string,
        headers: ["host", "upstream.test"],
        body: hasBody ? req : null,
        maxBodyBytes: null,
        responseHeaders: {},
        health,
      };
      const refuse = (r: ServerResponse, reason: Parameters<typeof writeRefusal>[1]) => writeRefusal(r, reason, "req_test");
      client.forward(res, f, refuse, () => {});
    });
    await new Promise<void>((r) => front.listen(0, "127.0.0.1", () => r()));
    port = (front.address() as AddressInfo).port;
  });
  afterAll(async () => {
    front.closeAllConnections();
    await new Promise<void>((r) => front.close(() => r()));
    client.destroy();
  });

  const request = (method = "GET", body?: string) =>
    send(port, "front.test", "/", body === undefined ? { method } : { method, body });

  it("retries a connect error on the other origin, then skips the ejected one", async () => {
    const good = await ok("good");
    const dead = await deadUrl();
    origins = [dead, good.url];
    for (let i = 0; i < 8; i++) expect((await request()).status).toBe(200);
    expect(good.hits).toBe(8);
    expect(health.isEjected(dead)).toBe(true);
  });

  it("retries a body-less GET reset before any response byte; not a body-less POST", async () => {
    const flaky = await resetter();
    const good = await ok("good");
    origins = [flaky.url, good.url];
    const gets: number[] = [];
    for (let i = 0; i < 2; i++) gets.push((await request("GET")).status);
    expect(gets).toEqual([200, 200]);
    expect(flaky.hits).toBe(1);
    const posts: number[] = [];
    for (let i = 0; i < 2; i++) posts.push((await request("POST")).status);
    expect(posts.sort()).toEqual([200, 502]);
    expect(flaky.hits).toBe(2);
  });

  it("ejects an origin after three 5xx and sends the rest to the healthy one", async () => {
    const bad = await serve((_req, res) => {
      res.statusCode = 503;
      res.end();
    });
    const good = await ok("good");
    origins = [bad.url, good.url];
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await request()).status);
    expect(bad.hits).toBe(3);
    expect(statuses.filter((s) => s === 503).length).toBe(3);
  });

  it("answers 502 with the refusal body when every origin refuses, and 504 when the only one is silent", async () => {
    origins = [await deadUrl(), await deadUrl()];
    for (let i = 0; i < 5; i++) {
      const res = await request();
      expect(res.status).toBe(502);
      expect(res.json()).toEqual({
        error: { code: "upstream_unavailable", message: "The upstream is not reachable.", requestId: "req_test" },
      });
    }
    const hole = await silent();
    origins = [hole.url];
    const { value: res, ms } = await timed(() => request());
    expect(res.status).toBe(504);
    expect(res.json().error.code).toBe("upstream_timeout");
    expect(ms).toBeLessThan(5_000);
    await eventually(() => hole.open() === 0, 3_000);
  });
});
