/**
 * The Postgres driver when a connection dies under a transaction: the backend killed
 * mid-query, or the network path cut (a failover, a partition ending in a reset).
 * postgres.js 3.4 wrote the transaction's own ROLLBACK to the dead socket from a
 * timer — an uncaught TypeError that took the whole control plane down — and left
 * the connection unusable; the project carries a patch (`patches/`). The process
 * must survive, the transaction must fail with a catchable error, and the same pool
 * must answer the next query.
 */
import postgres from "postgres";
import { sql } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { openDatabase, type Database } from "@portcullis/control-plane";
import { TEST_POSTGRES_URL } from "../helpers/env.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { TcpProxy } from "../helpers/tcp-proxy.ts";

const uncaught: unknown[] = [];
const onUncaught = (error: unknown) => uncaught.push(error);

describe("a Postgres connection lost under a transaction", () => {
  let testDb: TestDatabase;
  let relay: TcpProxy;
  let database: Database;
  let killer: postgres.Sql;

  beforeAll(async () => {
    process.on("uncaughtException", onUncaught);
    testDb = await createTestDatabase();
    const target = new URL(TEST_POSTGRES_URL);
    relay = await new TcpProxy(target.hostname, Number(target.port || 5432)).start();
    const url = new URL(testDb.url);
    url.host = `127.0.0.1:${relay.port}`;
    // One connection: the dead one is the one the next query must get back.
    database = await openDatabase({ url: url.toString(), dataDir: "", max: 1 });
    killer = postgres(TEST_POSTGRES_URL, { max: 1, onnotice: () => {} });
  });
  afterAll(async () => {
    process.off("uncaughtException", onUncaught);
    await database?.close();
    await killer?.end();
    await relay?.stop();
    await testDb?.drop();
  });
  afterEach(() => {
    expect(uncaught, "uncaught exceptions").toEqual([]);
  });

  /** Starts a transaction that holds its connection in a query until told. */
  async function transactionInFlight(): Promise<{ pid: number; done: Promise<unknown> }> {
    let pid: number | null = null;
    const done = database.db
      .transaction(async (tx) => {
        const rows = (await tx.execute(sql`select pg_backend_pid() as pid`)) as unknown as { pid: number }[];
        pid = Number(rows[0]?.pid);
        await tx.execute(sql`select pg_sleep(5)`);
      })
      .then(
        () => "committed",
        (error: unknown) => error,
      );
    const started = Date.now();
    while (pid === null) {
      if (Date.now() - started > 5_000) throw new Error("the transaction never started");
      await new Promise((r) => setTimeout(r, 20));
    }
    return { pid, done };
  }

  async function nextQuery(): Promise<unknown> {
    const rows = (await database.db.execute(sql`select 41 + 1 as answer`)) as unknown as { answer: number }[];
    return rows[0]?.answer;
  }

  it("the backend killed mid-query: the transaction fails, the process lives, the pool answers the next query", async () => {
    const tx = await transactionInFlight();
    await killer`select pg_terminate_backend(${tx.pid})`;
    const outcome = await tx.done;
    expect(outcome).toBeInstanceOf(Error);
    // A timer-thrown error would land here, after the transaction settled.
    await new Promise((r) => setTimeout(r, 100));
    expect(await nextQuery()).toBe(42);
  });

  it("the network path cut mid-query: the same, once Postgres is reachable again", async () => {
    const tx = await transactionInFlight();
    const port = relay.port;
    await relay.stop();
    const outcome = await tx.done;
    expect(outcome).toBeInstanceOf(Error);
    await new Promise((r) => setTimeout(r, 100));
    await relay.start(port);
    expect(await nextQuery()).toBe(42);
    // The killed transaction's backend is gone with its connection.
    await killer`select pg_terminate_backend(${tx.pid})`;
  });
});
