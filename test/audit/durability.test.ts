/**
 * Durability and tamper evidence of the trail: Postgres unreachable for the
 * consumer while traffic flows loses no event and duplicates none; the stream's
 * bound drops (and counts) rather than growing; `portcullis audit verify` finds an
 * edited and a deleted row.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import pino from "pino";
import { sql } from "drizzle-orm";
import { AuditConsumer, openDatabase, type Database } from "@portcullis/control-plane";
import { AUDIT_STREAM, hasStreams, RedisStore, type Store, type StreamStore } from "@portcullis/shared";
import { TEST_REDIS_URL } from "../helpers/env.ts";
import { auditCommand } from "../../control-plane/src/cli/audit.ts";
import { send } from "../helpers/http.ts";
import { eventually, startTestStack, type TestStack } from "../helpers/stack.ts";
import { TcpProxy } from "../helpers/tcp-proxy.ts";

function streams(store: Store): StreamStore {
  if (!hasStreams(store)) throw new Error("the stack's store offers no streams");
  return store;
}

async function countByRequest(stack: TestStack, ids: string[]): Promise<Map<string, number>> {
  const { rows } = await import("../../control-plane/src/db/client.ts");
  const found = await rows<{ request_id: string; n: string | number }>(
    stack.cp.database.db,
    sql`select request_id, count(*) as n from audit_events group by request_id`,
  );
  const wanted = new Set(ids);
  const out = new Map<string, number>();
  for (const r of found) if (wanted.has(r.request_id)) out.set(r.request_id, Number(r.n));
  return out;
}

async function verify(env: Record<string, string>, args: string[] = []) {
  const lines: string[] = [];
  const spy = vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
  const err = vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
  try {
    const code = await auditCommand(["verify", ...args], env);
    return { code, out: lines.join("\n") };
  } finally {
    spy.mockRestore();
    err.mockRestore();
  }
}

const OUTAGE_MS = Number(process.env.AUDIT_OUTAGE_SECONDS ?? 5) * 1000;

describe("a Postgres outage during traffic", () => {
  let stack: TestStack;
  let proxy: TcpProxy;
  let viaProxy: Database;
  let consumer: AuditConsumer;

  beforeAll(async () => {
    // The stack's own consumer is off: the only consumer reaches Postgres through a relay we cut.
    stack = await startTestStack({ audit: "stream", auditConsumer: false });
    const target = new URL(stack.databaseUrl);
    proxy = await new TcpProxy(target.hostname, Number(target.port || 5432)).start();
    target.port = String(proxy.port);
    viaProxy = await openDatabase({ url: target.toString(), dataDir: "", max: 2 });
    consumer = new AuditConsumer({
      db: viaProxy.db,
      store: streams(stack.store),
      log: pino({ level: "silent" }),
      blockMs: 200,
    });
    consumer.start();
  });
  afterAll(async () => {
    await consumer?.stop();
    await viaProxy?.close().catch(() => {});
    await proxy?.stop();
    await stack?.close();
  });

  it("loses no event and stores each exactly once", { timeout: 2 * OUTAGE_MS + 60_000 }, async () => {
    const acme = await stack.tenant("acme");
    const ids: string[] = [];
    const hit = async (i: number) => {
      const res = await stack.request(i % 3 === 0 ? "nobody.localhost" : acme.host, `/n/${i}`);
      ids.push(res.headers["x-request-id"] as string);
    };
    for (let i = 0; i < 30; i++) await hit(i);
    await eventually(async () => (await countByRequest(stack, ids)).size === ids.length, 10_000, 50);

    await proxy.stop(); // Postgres is now unreachable for the consumer.
    const during: string[] = [];
    const started = Date.now();
    let i = 1000;
    // Traffic keeps flowing through the outage. What is kept is limited by the stream's
    // bound, not by the duration: 5 s by default, AUDIT_OUTAGE_SECONDS=60 for the full minute.
    while (Date.now() - started < OUTAGE_MS) {
      await hit(i++);
      during.push(ids.at(-1) as string);
    }
    await stack.router.audit.flush();
    expect(await streams(stack.store).streamLength(AUDIT_STREAM.key)).toBeGreaterThan(0);
    expect((await countByRequest(stack, during)).size).toBe(0);

    await proxy.start(proxy.port); // Postgres is back.
    for (let j = 0; j < 20; j++) await hit(5000 + j);
    // Cheap polling (a count), then the exact check once.
    const total = async () => {
      const { rows } = await import("../../control-plane/src/db/client.ts");
      const [r] = await rows<{ n: string | number }>(stack.cp.database.db, sql`select count(*) as n from audit_events`);
      return Number(r?.n);
    };
    await eventually(async () => (await total()) >= ids.length, OUTAGE_MS + 30_000, 500).catch(async (error) => {
      const found = await countByRequest(stack, ids);
      throw new Error(
        `${error.message}: ${found.size} of ${ids.length} stored; stream holds ${await streams(stack.store).streamLength(AUDIT_STREAM.key)}; ` +
          `router queue ${stack.router.audit.depth}, dropped ${stack.router.audit.dropped}`,
      );
    });
    const counts = await countByRequest(stack, ids);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect(counts.size).toBe(new Set(ids).size);
    expect(stack.router.audit.dropped).toBe(0);
    await eventually(async () => (await streams(stack.store).streamLength(AUDIT_STREAM.key)) === 0, 10_000, 50);

    // And the chain written across the outage is intact.
    const v = await verify({ DATABASE_URL: stack.databaseUrl });
    expect(v.code, v.out).toBe(0);
    expect(v.out).toContain("intact");
  });
});

describe("bounded memory", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack({ audit: "stream", auditConsumer: false, router: { auditStreamMaxLen: 5 } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("drops what the stream cannot hold and counts it, never silently", async () => {
    // Refusals may fill only their share of the stream (half of 5): the rest is for allows.
    for (let i = 0; i < 20; i++) await stack.request("nobody.localhost");
    await stack.router.audit.flush();
    expect(await streams(stack.store).streamLength(AUDIT_STREAM.key)).toBe(2);
    expect(stack.router.audit.dropped).toBe(18);
    const metrics = await send(stack.router.opsPort, "127.0.0.1", "/metrics");
    expect(metrics.text).toMatch(/^portcullis_audit_dropped_total\{decision="refuse"\} 18$/m);
  });

  it("holds at most AUDIT_QUEUE_MAX allows while Redis is unreachable, counts the rest, then delivers what it held", async () => {
    const relay = await new TcpProxy(new URL(TEST_REDIS_URL).hostname, Number(new URL(TEST_REDIS_URL).port || 6379)).start();
    const viaRelay = new RedisStore({ url: `redis://127.0.0.1:${relay.port}`, prefix: stack.prefix });
    try {
      await viaRelay.ready();
      const acme = await stack.tenant("bounded");
      const router = await stack.addRouter({ auditQueueMax: 10, auditStreamMaxLen: 1_000 }, { store: viaRelay });
      expect((await stack.request(acme.host, "/warm", {}, router)).status).toBe(200);
      await router.audit.flush();
      await relay.stop();
      for (let i = 0; i < 30; i++) expect((await stack.request(acme.host, "/", {}, router)).status).toBe(200);
      await router.audit.flush();
      expect(router.audit.depth).toBe(10);
      expect(router.audit.dropped).toBe(20);
      const metrics = await send(router.opsPort, "127.0.0.1", "/metrics");
      expect(metrics.text).toMatch(/^portcullis_audit_dropped_total\{decision="allow"\} 20$/m);
      expect(metrics.text).toMatch(/^portcullis_audit_queue_depth 10$/m);
      const before = await streams(stack.store).streamLength(AUDIT_STREAM.key);
      await relay.start(relay.port);
      await eventually(async () => {
        await router.audit.flush();
        return router.audit.depth === 0;
      }, 10_000);
      expect(await streams(stack.store).streamLength(AUDIT_STREAM.key)).toBe(before + 10);
      expect(router.audit.dropped).toBe(20);
    } finally {
      await relay.stop();
      await viaRelay.close();
    }
  });
});

describe("audit verify", () => {
  let stack: TestStack;
  let env: Record<string, string>;
  beforeAll(async () => {
    stack = await startTestStack({ audit: "stream" });
    env = { DATABASE_URL: stack.databaseUrl };
    const acme = await stack.tenant("acme");
    let last = "";
    for (let i = 0; i < 12; i++)
      last = (await stack.request(i % 2 ? acme.host : "nobody.localhost")).headers["x-request-id"] as string;
    expect(await stack.auditRows(last)).toHaveLength(1);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("passes an intact chain, then reports an edited row and a deleted row as the first broken link", async () => {
    const db = stack.cp.database.db;
    const first = await verify(env);
    expect(first.code, first.out).toBe(0);

    await db.execute(sql`update audit_events set status = status + 1 where stream = 'decisions' and seq = 4`);
    const edited = await verify(env, ["--stream", "decisions"]);
    expect(edited.code).toBe(1);
    expect(edited.out).toContain("BROKEN at seq 4 (hash_mismatch)");

    // A range that ends before the edit is still intact; one that starts after it too.
    const [row5] = (await db.execute(sql`select time from audit_events where seq = 5`)) as unknown as { time: Date }[];
    // (Seq order is not time order: each flush writes allows before refusals, and
    // routers interleave. A range ending before every row from seq 4 on excludes it.)
    const [later] = (await db.execute(
      sql`select min(time) as time from audit_events where stream = 'decisions' and seq >= 4`,
    )) as unknown as { time: Date }[];
    const before4 = new Date(new Date(later!.time).getTime() - 1).toISOString();
    expect((await verify(env, ["--until", before4])).code).toBe(0);

    await db.execute(sql`update audit_events set status = status - 1 where seq = 4`);
    expect((await verify(env)).code).toBe(0);

    await db.execute(sql`delete from audit_events where stream = 'decisions' and seq = 7`);
    const deleted = await verify(env, ["--since", new Date(row5!.time).toISOString()]);
    expect(deleted.code).toBe(1);
    expect(deleted.out).toContain("BROKEN at seq 7 (rows_missing)");

    expect((await verify(env, ["check"])).code).toBe(2);
  });
});
