/**
 * The control plane under partial failure, over real sockets: its own
 * redis-server killed and restarted empty, and the real Postgres cut or black-holed
 * through a relay. What must hold: the process never sees an unhandled rejection,
 * admin writes commit while Redis is down and reach Redis once it is back, admin and
 * key-service calls answer a clear 503 quickly while Postgres is away and work again
 * without a restart once it returns, and no audit event is lost meanwhile.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ControlPlane,
  createControlPlane,
  type Database,
  loadControlPlaneConfig,
  openDatabase,
  schema,
} from "@portcullis/control-plane";
import { AUDIT_STREAM, CACHE, INVALIDATION_CHANNEL, RedisStore, type Store } from "@portcullis/shared";
import { inArray } from "drizzle-orm";
import { TEST_POSTGRES_URL } from "../helpers/env.ts";
import { type Answer, send } from "../helpers/http.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { createTestStore, deleteKeys, testPrefix } from "../helpers/redis.ts";
import { RedisServer } from "../helpers/redis-server.ts";
import { SECRETS } from "../helpers/stack.ts";
import { failOnUnhandledRejections } from "../helpers/unhandled.ts";
import { TcpProxy } from "../helpers/tcp-proxy.ts";
import { unknownHostEvent } from "../helpers/audit-event.ts";

failOnUnhandledRejections();

const silent = pino({ level: "silent" });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A control plane with its admin API and key service listening on port 0. */
class Harness {
  cp!: ControlPlane;
  adminPort = 0;
  keyServicePort = 0;
  #servers: Server[] = [];

  static async start(deps: { store: Store; database: Database; env?: Record<string, string>; auditConsumer?: boolean }) {
    const h = new Harness();
    const config = loadControlPlaneConfig({ ...SECRETS, PLATFORM_DOMAIN: "localhost", ...(deps.env ?? {}) });
    h.cp = await createControlPlane(config, {
      store: deps.store,
      database: deps.database,
      log: silent,
      jobs: false,
      auditConsumer: deps.auditConsumer ?? false,
    });
    h.adminPort = await h.#listen(h.cp.admin.fetch);
    h.keyServicePort = await h.#listen(h.cp.keyService.fetch);
    return h;
  }

  async #listen(fetch: Parameters<typeof getRequestListener>[0]): Promise<number> {
    const server = createServer(getRequestListener(fetch));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    this.#servers.push(server);
    return (server.address() as AddressInfo).port;
  }

  admin(method: string, path: string, body?: unknown): Promise<Answer> {
    return send(this.adminPort, "127.0.0.1", path, {
      method,
      headers: {
        authorization: `Bearer ${SECRETS.ADMIN_TOKEN}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  }

  keyService(path: string): Promise<Answer> {
    return send(this.keyServicePort, "127.0.0.1", path, {
      headers: { authorization: `Bearer ${SECRETS.KEY_SERVICE_TOKEN}` },
    });
  }

  async close(): Promise<void> {
    for (const s of this.#servers) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
    await this.cp.close();
  }
}

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
}

async function eventually<T>(probe: () => Promise<T | null | undefined | false>, timeoutMs: number, stepMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await sleep(stepMs);
  }
}

describe("Redis killed and restarted empty", () => {
  let redis: RedisServer;
  let testDb: TestDatabase;
  let store: RedisStore;
  let h: Harness;
  const prefix = testPrefix();

  beforeAll(async () => {
    redis = await RedisServer.start();
    testDb = await createTestDatabase();
    // As the control plane builds its own store from REDIS_URL (breaker probed every 250 ms).
    store = new RedisStore({ url: redis.url, prefix, breakerProbeMs: 250 });
    await store.ready();
    h = await Harness.start({ store, database: testDb.database });
  });
  afterAll(async () => {
    await h?.close();
    await store?.close();
    await redis?.stop();
    await testDb?.drop();
  });

  it("POST /v1/tenants while Redis is down answers 201 (no unhandled rejection) and reaches Redis within 2 s of its return", async () => {
    const before = await h.admin("POST", "/v1/tenants", { slug: "before", name: "Before" });
    expect(before.status, before.text).toBe(201);
    expect(await h.cp.publisher.flush(5_000)).toBe(true);

    await redis.kill();
    const created = await timed(() => h.admin("POST", "/v1/tenants", { slug: "during", name: "During" }));
    expect(created.value.status, created.value.text).toBe(201);
    // Redis down is not the admin's wait: the publication is retried in the background.
    expect(created.ms).toBeLessThan(2_000);
    const id = created.value.json().id as string;
    // Later changes to the same tenant join the same pending union.
    const suspended = await h.admin("PATCH", "/v1/tenants/during", { status: "suspended" });
    expect(suspended.status, suspended.text).toBe(200);
    expect(h.cp.publisher.pending).toBeGreaterThan(0);
    // Still retrying a while later (the old publisher gave up after 20 attempts).
    await sleep(1_500);
    expect(h.cp.publisher.pending).toBe(2);

    await redis.restart();
    const restarted = Date.now();
    const raw = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    const sub = new Redis(redis.url);
    const events: { v: number; tenants: string[]; hosts: string[] }[] = [];
    sub.on("message", (_channel: string, message: string) => events.push(JSON.parse(message)));
    await sub.subscribe(`${prefix}${INVALIDATION_CHANNEL}`);
    try {
      const record = await eventually(() => raw.get(`${prefix}${CACHE.tenant.key(id)}`), 2_000);
      const host = await eventually(() => raw.get(`${prefix}${CACHE.host.key("during.localhost")}`), 2_000);
      const event = await eventually(async () => events.find((e) => e.tenants.includes(id)), 2_000);
      expect(Date.now() - restarted).toBeLessThanOrEqual(2_000);
      // The record is the latest state (suspended), not the state at creation.
      expect(JSON.parse(record).tenant).toMatchObject({ id, status: "suspended" });
      expect(JSON.parse(host)).toMatchObject({ tenantId: id });
      expect(event.hosts).toContain("during.localhost");
      expect(await h.cp.publisher.flush(2_000)).toBe(true);
      expect(h.cp.publisher.pending).toBe(0);
    } finally {
      raw.disconnect();
      sub.disconnect();
    }

    // The control plane's metrics show the pending gauge back at 0.
    const scrape = await h.cp.ops.request("/metrics");
    expect(await scrape.text()).toMatch(/^portcullis_publish_pending 0$/m);
  });
});

describe("Postgres cut or black-holed", () => {
  let testDb: TestDatabase;
  let relay: TcpProxy;
  let database: Database;
  let store: RedisStore & { prefix: string };
  let h: Harness;

  beforeAll(async () => {
    testDb = await createTestDatabase();
    const target = new URL(TEST_POSTGRES_URL);
    relay = await new TcpProxy(target.hostname, Number(target.port || 5432)).start();
    const url = new URL(testDb.url);
    url.host = `127.0.0.1:${relay.port}`;
    database = await openDatabase({ url: url.toString(), dataDir: "" });
    store = await createTestStore();
    h = await Harness.start({ store, database, auditConsumer: true });
  });
  afterAll(async () => {
    relay?.heal();
    await h?.close();
    await database?.close();
    await store?.close();
    if (store) await deleteKeys(store.prefix);
    await relay?.stop();
    await testDb?.drop();
  });

  async function recovered(): Promise<void> {
    // The breaker's probe finds Postgres back on its own, without a restart.
    await eventually(async () => (await h.admin("GET", "/v1/tenants")).status === 200, 8_000, 100);
  }

  it("admin calls answer 503 database_unavailable within 5 s while Postgres is cut, and work again once it is back", async () => {
    expect((await h.admin("POST", "/v1/tenants", { slug: "acme", name: "Acme" })).status).toBe(201);

    await relay.stop();
    for (const call of [
      () => h.admin("POST", "/v1/tenants", { slug: "cut", name: "Cut" }),
      () => h.admin("GET", "/v1/tenants"),
      () => h.admin("GET", "/v1/tenants/acme"),
      () => h.admin("PATCH", "/v1/tenants/acme", { status: "suspended" }),
    ]) {
      const { value: res, ms } = await timed(call);
      expect(ms).toBeLessThan(5_000);
      expect(res.status, res.text).toBe(503);
      expect(res.headers["retry-after"]).toBe("1");
      const body = res.json();
      expect(body.error).toMatchObject({ code: "database_unavailable", message: expect.any(String) });
      expect(body.error.requestId).toMatch(/^req_/);
    }
    // Known down now: answered at once, without touching the pool.
    expect(h.cp.databaseBreaker.state).toBe("open");
    const fast = await timed(() => h.admin("GET", "/v1/tenants"));
    expect(fast.value.status).toBe(503);
    expect(fast.ms).toBeLessThan(250);

    // The key service says so quickly too, so a router's client fails fast.
    const resolve = await timed(() => h.keyService("/v1/resolve/host/acme.localhost"));
    expect(resolve.value.status).toBe(503);
    expect(resolve.value.json().error.code).toBe("database_unavailable");
    expect(resolve.ms).toBeLessThan(250);
    expect((await h.keyService("/healthz")).status).toBe(503);

    await relay.start();
    await recovered();
    const created = await h.admin("POST", "/v1/tenants", { slug: "after", name: "After" });
    expect(created.status, created.text).toBe(201);
    expect((await h.keyService("/v1/resolve/host/after.localhost")).json().host.tenantId).toBe(created.json().id);
    expect((await h.keyService("/healthz")).status).toBe(200);
  });

  it("admin calls answer 503 within their 5 s deadline and the key service within 1.5 s while Postgres is black-holed", async () => {
    expect((await h.admin("GET", "/v1/tenants")).status).toBe(200);
    relay.blackhole();
    try {
      const [admin, key] = await Promise.all([
        timed(() => h.admin("GET", "/v1/tenants/acme")),
        timed(() => h.keyService("/v1/resolve/host/acme.localhost")),
      ]);
      expect(admin.value.status, admin.value.text).toBe(503);
      expect(["deadline_exceeded", "database_unavailable"]).toContain(admin.value.json().error.code);
      expect(admin.ms).toBeLessThan(5_500);
      expect(key.value.status, key.value.text).toBe(503);
      expect(key.ms).toBeLessThan(2_000);
      // The health probe routers use never hangs either.
      const health = await timed(() => h.keyService("/healthz"));
      expect(health.value.status).toBe(503);
      expect(health.ms).toBeLessThan(2_000);
    } finally {
      relay.heal();
    }
    await recovered();
    expect((await h.admin("GET", "/v1/tenants/acme")).status).toBe(200);
  });

  it("audit events appended while Postgres is cut are all stored once it is back (0 lost), with the consumer backing off meanwhile", async () => {
    const failuresBefore = (await h.cp.metrics.auditWriteFailures.get()).values[0]?.value ?? 0;
    await relay.stop();
    const ids = Array.from({ length: 200 }, (_, i) => `req_cut_${i}_${Date.now()}`);
    const events = ids.map(unknownHostEvent);
    // Routers append in batches while the outage lasts.
    for (let i = 0; i < events.length; i += 50) {
      const batch = events.slice(i, i + 50).map((e) => JSON.stringify(e));
      expect(await store.streamAppend(AUDIT_STREAM.key, batch, 100_000)).toBe(batch.length);
      await sleep(300);
    }
    await sleep(500);
    const failuresDuring = ((await h.cp.metrics.auditWriteFailures.get()).values[0]?.value ?? 0) - failuresBefore;
    // Failing, and backing off rather than spinning: ~1.7 s of outage is a handful of attempts.
    expect(failuresDuring).toBeGreaterThan(0);
    expect(failuresDuring).toBeLessThan(30);

    await relay.start();
    const stored = await eventually(
      async () => {
        const rows = await testDb.database.db
          .select({ requestId: schema.auditEvents.requestId })
          .from(schema.auditEvents)
          .where(inArray(schema.auditEvents.requestId, ids));
        return rows.length === ids.length ? rows : null;
      },
      10_000,
      100,
    );
    expect(new Set(stored.map((r) => r.requestId)).size).toBe(ids.length);
    expect(await eventually(async () => (await store.streamLength(AUDIT_STREAM.key)) === 0, 5_000)).toBe(true);
    await recovered();
  });
});
