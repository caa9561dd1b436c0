/**
 * The publisher under a store that fails (control-plane/src/publish): real Postgres,
 * and a redis-server of its own to kill and restart. Changes made while Redis is
 * down are kept as one union and written once it is back, as their latest state and
 * in commit order; a store call that fails while the database is still being read
 * is handled; shutdown gives up after its bound and says what was not published.
 */
import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ControlPlane, createControlPlane, loadControlPlaneConfig, Publisher } from "@portcullis/control-plane";
import { CACHE, INVALIDATION_CHANNEL, type Invalidation, RedisStore } from "@portcullis/shared";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { testPrefix } from "../helpers/redis.ts";
import { RedisServer } from "../helpers/redis-server.ts";
import { SECRETS } from "../helpers/stack.ts";
import { failOnUnhandledRejections } from "../helpers/unhandled.ts";

failOnUnhandledRejections();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let redis: RedisServer;
let testDb: TestDatabase;
let store: RedisStore;
let cp: ControlPlane;
const prefix = testPrefix();
const logs: { level: number; msg: string; [k: string]: unknown }[] = [];

beforeAll(async () => {
  redis = await RedisServer.start();
  testDb = await createTestDatabase();
  store = new RedisStore({ url: redis.url, prefix, breakerProbeMs: 250 });
  await store.ready();
  const log = pino({ level: "warn" }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  cp = await createControlPlane(loadControlPlaneConfig({ ...SECRETS, PLATFORM_DOMAIN: "localhost" }), {
    store,
    database: testDb.database,
    log,
    jobs: false,
    auditConsumer: false,
  });
});
afterAll(async () => {
  await cp?.close();
  await store?.close();
  await redis?.stop();
  await testDb?.drop();
});

/** Invalidation events as a router hears them, from a subscription of its own. */
async function listen(): Promise<{ events: Invalidation[]; close: () => void }> {
  const sub = new Redis(redis.url);
  const events: Invalidation[] = [];
  sub.on("message", (_c: string, m: string) => events.push(JSON.parse(m)));
  await sub.subscribe(`${prefix}${INVALIDATION_CHANNEL}`);
  return { events, close: () => sub.disconnect() };
}

async function record(key: string): Promise<{ v: number; tenant: { status: string } | null } | null> {
  const raw = new Redis(redis.url);
  try {
    const value = await raw.get(`${prefix}${key}`);
    return value === null ? null : JSON.parse(value);
  } finally {
    raw.disconnect();
  }
}

async function create(slug: string): Promise<string> {
  const created = await cp.tenants.create({ slug, name: slug });
  if (!created.ok) throw new Error(`create ${slug}: ${created.code}`);
  return created.value.id;
}

describe("publisher", () => {
  it("changes published concurrently are announced with rising versions and land as the latest state", async () => {
    const id = await create("order");
    await cp.publisher.flush();
    const l = await listen();
    try {
      const publications: Promise<unknown>[] = [];
      for (let i = 0; i < 20; i++) {
        const status = i % 2 === 0 ? "suspended" : "active";
        publications.push(cp.tenants.patch("order", { status }));
      }
      await Promise.all(publications);
      expect(await cp.publisher.flush(5_000)).toBe(true);
      await sleep(100);
      const mine = l.events.filter((e) => e.tenants.includes(id));
      expect(mine.length).toBeGreaterThan(0);
      // Coalesced, never more events than changes, and versions only go up.
      expect(mine.length).toBeLessThanOrEqual(20);
      for (let i = 1; i < mine.length; i++) expect(mine[i]!.v).toBeGreaterThan(mine[i - 1]!.v);
      // Whichever patch committed last, the store holds what Postgres holds.
      const truth = await cp.tenants.get(id);
      expect(truth.ok && (await record(CACHE.tenant.key(id)))?.tenant?.status).toBe(truth.ok && truth.value.status);
    } finally {
      l.close();
    }
  });

  it("a store call failing while the database is still being read is handled (regression: unhandled 'Stream isn't writeable')", async () => {
    const ids = [await create("early-a"), await create("early-b"), await create("early-c")];
    await cp.publisher.flush();
    await redis.kill();
    try {
      // One write names several records: each store call is issued between database reads.
      const published = cp.publisher.publish({
        tenants: ids,
        hosts: ["early-a.localhost", "early-b.localhost", "early-c.localhost"],
      });
      await expect(published).resolves.toBeUndefined();
      await sleep(300);
      expect(cp.publisher.pending).toBe(6);
      expect(await cp.publisher.flush(200)).toBe(false);
    } finally {
      await redis.restart();
    }
    expect(await cp.publisher.flush(3_000)).toBe(true);
    expect((await record(CACHE.tenant.key(ids[2]!)))?.tenant).not.toBeNull();
  });

  it("coalesces what changed while Redis was down into one union, written once it is back, then keeps order", async () => {
    const a = await create("union-a");
    await cp.publisher.flush();
    await redis.kill();
    let l: Awaited<ReturnType<typeof listen>> | null = null;
    try {
      expect((await cp.tenants.patch("union-a", { status: "suspended" })).ok).toBe(true);
      const b = await create("union-b");
      expect((await cp.tenants.patch("union-a", { status: "active" })).ok).toBe(true);
      expect((await cp.tenants.patch("union-b", { status: "suspended" })).ok).toBe(true);
      // Four changes, three ids: tenants a and b, b's subdomain.
      expect(cp.publisher.pending).toBe(3);
      // Many retries later (far more than 20), still pending, never dropped.
      await sleep(2_000);
      expect(cp.publisher.pending).toBe(3);

      await redis.restart();
      l = await listen();
      expect(await cp.publisher.flush(3_000)).toBe(true);
      await sleep(100);
      const union = l.events.find((e) => e.tenants.includes(a));
      expect(union?.tenants).toEqual(expect.arrayContaining([a, b]));
      expect(union?.hosts).toContain("union-b.localhost");
      expect((await record(CACHE.tenant.key(a)))?.tenant?.status).toBe("active");
      expect((await record(CACHE.tenant.key(b)))?.tenant?.status).toBe("suspended");

      // A change after recovery is announced after the union, with a newer version.
      expect((await cp.tenants.patch("union-b", { status: "active" })).ok).toBe(true);
      expect(await cp.publisher.flush(3_000)).toBe(true);
      await sleep(100);
      const after = l.events.filter((e) => e.tenants.includes(b));
      expect(after.length).toBeGreaterThanOrEqual(2);
      expect(after.at(-1)!.v).toBeGreaterThan(union!.v);
      expect((await record(CACHE.tenant.key(b)))?.tenant?.status).toBe("active");
    } finally {
      l?.close();
      await redis.restart().catch(() => {});
    }
  });

  it("close gives up after its bound while Redis is down and names what was not published", async () => {
    // A publisher of its own, so the shared control plane keeps working.
    const id = await create("closing");
    await cp.publisher.flush();
    const lines: { msg: string; tenants?: string[]; pending?: number }[] = [];
    const log = pino({ level: "error" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const own = new Publisher(testDb.database.db, store, log);
    await redis.kill();
    try {
      await own.publish({ tenants: [id] });
      const started = performance.now();
      await own.close(300);
      expect(performance.now() - started).toBeLessThan(1_000);
      const report = lines.find((l) => l.msg.includes("not published"));
      expect(report?.tenants).toEqual([id]);
      expect(report?.pending).toBe(1);
      // Closed: a flush does not wait on retries that will never come.
      expect(await own.flush()).toBe(false);
    } finally {
      await redis.restart();
    }
  });

  it("writes again what it published in the last minute when its subscription is made again (a failover that lost the last writes)", async () => {
    const id = await create("lost-write");
    await cp.publisher.flush();
    const before = await record(CACHE.tenant.key(id));
    expect(before?.tenant?.status).toBe("active");
    const suspended = await cp.tenants.patch("lost-write", { status: "suspended" });
    expect(suspended.ok).toBe(true);
    await cp.publisher.flush();
    const current = await record(CACHE.tenant.key(id));
    expect(current?.tenant?.status).toBe("suspended");
    // The new master has only the older record: the suspension was lost with the old one.
    const raw = new Redis(redis.url);
    try {
      await raw.set(`${prefix}${CACHE.tenant.key(id)}`, JSON.stringify(before), "PX", 600_000);
      // Every subscriber is cut, as by a failover: each makes its subscription again.
      await raw.call("CLIENT", "KILL", "TYPE", "pubsub");
    } finally {
      raw.disconnect();
    }
    const deadline = Date.now() + 5_000;
    let again = await record(CACHE.tenant.key(id));
    while (again?.tenant?.status !== "suspended" && Date.now() < deadline) {
      await sleep(50);
      again = await record(CACHE.tenant.key(id));
    }
    expect(again?.tenant?.status).toBe("suspended");
    expect(again?.v).toBe(current?.v);
  });

  it("forgets what it published longer ago than its window", async () => {
    let clock = 1_000_000;
    const p = new Publisher(testDb.database.db, store, pino({ level: "silent" }), { recentMs: 60_000, now: () => clock });
    await p.publish({ tenants: ["ten_window_a"] });
    clock += 30_000;
    await p.publish({ tenants: ["ten_window_b"] });
    expect(p.republishRecent()).toBe(2);
    clock += 45_000;
    // a is 75 s old, b 45 s: only b is written again.
    expect(p.republishRecent()).toBe(1);
    await p.close();
  });
});
