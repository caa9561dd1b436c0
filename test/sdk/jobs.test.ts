/**
 * Jobs that carry their tenant, on real Postgres: a job enqueued in a tenant's
 * transaction runs scoped to that tenant; a job whose envelope is missing, malformed,
 * forged, altered (payload or tenant) or expired is refused and never runs; two
 * workers never take the same job, and a worker skips a job another holds locked
 * instead of waiting for it; a failing job is retried, then marked failed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createJobTable,
  enqueueForTenant,
  jobWorker,
  openJob,
  runForTenant,
  sealJob,
  type Tenant,
  type TransactionOf,
  tenantDatabases,
  postgresJs,
  withTenant,
} from "@portcullis/sdk";
import { randomContextKey, verifiedTenant } from "@portcullis/sdk/testing";
import { type Connection, type SdkTestDatabase, sdkTestDatabase } from "./db.ts";

const KEY = randomContextKey(1);
const KEY_V2 = randomContextKey(2);
let pg: SdkTestDatabase;
let owner: Connection;
let app: Connection;
let acme: Tenant;
let globex: Tenant;

beforeAll(async () => {
  pg = await sdkTestDatabase();
  owner = pg.connect(pg.owner);
  app = pg.connect(pg.app, 4);
  await owner.sql.unsafe(`
    create table orders (id text primary key, tenant_id text not null, item text not null, status text not null default 'placed');
    insert into orders (id, tenant_id, item) values ('o1', 'ten_acme', 'anvil'), ('o2', 'ten_globex', 'hammock');
    alter table orders enable row level security;
    alter table orders force row level security;
    create policy tenant_isolation on orders using (tenant_id = nullif(current_setting('app.tenant_id', true), ''));
    grant select, update on orders to ${pg.app};`);
  await createJobTable(owner.db);
  await owner.sql.unsafe(`grant select, insert, update on portcullis_jobs to ${pg.app};
    grant usage on sequence portcullis_jobs_id_seq to ${pg.app};`);
  acme = verifiedTenant(KEY, { id: "ten_acme", slug: "acme", db: pg.binding });
  globex = verifiedTenant(KEY, { id: "ten_globex", slug: "globex", db: pg.binding });
});
afterAll(async () => {
  await pg?.drop();
});

/** A handler that records what it saw: the tenant, the payload and the rows visible to it. */
function recorder() {
  const runs: { tenant: string; payload: unknown; visible: string[] }[] = [];
  const handler = async (tx: TransactionOf<typeof app.db>, payload: unknown, tenant: Tenant) => {
    const rows = (await tx.execute("select id from orders order by id")) as unknown as { id: string }[];
    runs.push({ tenant: tenant.id, payload, visible: rows.map((r) => r.id) });
  };
  return { runs, handler };
}

const statusOf = async (id: string) =>
  (await owner.sql`select status, last_error from portcullis_jobs where id = ${id}`)[0] as {
    status: string;
    last_error: string | null;
  };

const worker = (handler: ReturnType<typeof recorder>["handler"], db = app.db) =>
  jobWorker({ db, keys: [KEY, KEY_V2], handlers: { "order.confirm": handler } });

describe("jobs carry their tenant (real Postgres)", () => {
  it("a job enqueued in acme's transaction runs inside withTenant for acme, and sees acme's rows only", async () => {
    const id = await withTenant(app.db, acme, (tx) =>
      enqueueForTenant(tx, acme, { type: "order.confirm", payload: { orderId: "o1" } }, { keys: KEY }),
    );
    const { runs, handler } = recorder();
    expect(await worker(handler).runNext()).toEqual({ ran: true, id, status: "done", tenantId: "ten_acme" });
    expect(runs).toEqual([{ tenant: "ten_acme", payload: { orderId: "o1" }, visible: ["o1"] }]);
    expect(await statusOf(id)).toEqual({ status: "done", last_error: null });
    expect(await worker(handler).runNext()).toEqual({ ran: false });
  });

  it("an enqueue rolled back with its transaction leaves no job", async () => {
    await expect(
      withTenant(app.db, acme, async (tx) => {
        await enqueueForTenant(tx, acme, { type: "order.confirm", payload: {} }, { keys: KEY });
        throw new Error("the order failed");
      }),
    ).rejects.toThrow("the order failed");
    expect(await worker(recorder().handler).runNext()).toEqual({ ran: false });
  });

  it("refuses, without running them, jobs whose envelope is missing, malformed, forged, altered or expired", async () => {
    const enqueue = (t: Tenant, payload: unknown, options: Partial<Parameters<typeof enqueueForTenant>[3]> = {}) =>
      enqueueForTenant(app.db, t, { type: "order.confirm", payload }, { keys: KEY, ...options });
    const altered = await enqueue(acme, { orderId: "o1" });
    await owner.sql`update portcullis_jobs set envelope = jsonb_set(envelope, '{payload}', '"{\\"orderId\\":\\"o2\\"}"') where id = ${altered}`;
    const moved = await enqueue(acme, { orderId: "o1" });
    await owner.sql`update portcullis_jobs set envelope = jsonb_set(envelope, '{tenant,id}', '"ten_globex"') where id = ${moved}`;
    const retyped = await enqueue(acme, { orderId: "o1" });
    await owner.sql`update portcullis_jobs set envelope = jsonb_set(envelope, '{type}', '"order.refund"') where id = ${retyped}`;
    const forged = await enqueue(acme, { orderId: "o2" }, { keys: randomContextKey(1) });
    const expired = await enqueue(acme, { orderId: "o1" }, { now: Date.now() - 2 * 3_600_000, ttlMs: 3_600_000 });
    const [missing] =
      await owner.sql`insert into portcullis_jobs (type, envelope) values ('order.confirm', 'null') returning id::text`;
    const [malformed] =
      await owner.sql`insert into portcullis_jobs (type, envelope) values ('order.confirm', '{"v":1,"k":1}') returning id::text`;
    const unknownVersion = await enqueue(acme, {}, { keys: randomContextKey(7) });

    const { runs, handler } = recorder();
    const w = worker(handler);
    const results = [];
    for (let r = await w.runNext(); r.ran; r = await w.runNext()) results.push(r);
    expect(runs).toEqual([]);
    const refused = Object.fromEntries(results.map((r) => [r.ran ? r.id : "", r.ran ? `${r.status} ${r.error}` : ""]));
    expect(refused).toEqual({
      [altered]: "refused bad_signature",
      [moved]: "refused bad_signature",
      [retyped]: "refused bad_signature",
      [forged]: "refused bad_signature",
      [expired]: "refused expired_envelope",
      [missing?.id]: "refused missing_envelope",
      [malformed?.id]: "refused malformed_envelope",
      [unknownVersion]: "refused unknown_key",
    });
    expect(await statusOf(altered)).toEqual({ status: "refused", last_error: "bad_signature" });
  });

  it("only a verified tenant can be sealed into a job; an envelope opens to a verified tenant", () => {
    expect(() => sealJob({ ...acme }, "t", {}, { keys: KEY })).toThrow(expect.objectContaining({ code: "unverified_tenant" }));
    expect(() => sealJob(acme, "t", {}, { keys: (_t, v) => (v === 1 ? KEY : null) })).toThrow(
      expect.objectContaining({ code: "no_signing_key" }),
    );
    const envelope = sealJob(acme, "t", { a: 1 }, { keys: (_t, v) => (v === 1 ? KEY : null), signingVersion: 1 });
    const opened = openJob(envelope, { keys: KEY });
    expect(opened).toMatchObject({ ok: true, type: "t", payload: { a: 1 }, tenant: { id: "ten_acme", source: "job" } });
    // Any signed field changed (here the expiry, to extend it) breaks the seal.
    expect(openJob({ ...envelope, exp: envelope.exp + 1 }, { keys: KEY })).toEqual({ ok: false, code: "bad_signature" });
    expect(openJob(envelope, { keys: KEY, now: envelope.exp + 1 })).toEqual({ ok: false, code: "expired_envelope" });
  });

  it("runForTenant runs on the tenant's own database through the registry", async () => {
    const envelope = sealJob(globex, "order.confirm", { orderId: "o2" }, { keys: KEY });
    const dbs = tenantDatabases({ open: postgresJs((b) => `postgres://${pg.app}@${b.server}/${b.database}`) });
    try {
      const outcome = await runForTenant(
        dbs,
        envelope,
        async (tx) => tx.execute("update orders set status = 'confirmed' returning id"),
        {
          keys: KEY,
        },
      );
      expect(outcome).toMatchObject({ ok: true, type: "order.confirm", value: [{ id: "o2" }] });
      const refused = await runForTenant(dbs, { ...envelope, payload: "{}" }, async () => "ran", { keys: KEY });
      expect(refused).toEqual({ ok: false, code: "bad_signature" });
    } finally {
      await dbs.close();
    }
    // Forced RLS: the owner, outside any tenant, sees nothing; the superuser sees the update landed on globex's row only.
    expect(await owner.sql`select id from orders`).toEqual([]);
    expect(await pg.connect(undefined, 1).sql`select id, status from orders order by id`).toEqual([
      { id: "o1", status: "placed" },
      { id: "o2", status: "confirmed" },
    ]);
  });

  it("SKIP LOCKED: a worker passes over a job another transaction holds, instead of waiting for it", async () => {
    const first = await enqueueForTenant(app.db, acme, { type: "order.confirm", payload: 1 }, { keys: KEY });
    const second = await enqueueForTenant(app.db, acme, { type: "order.confirm", payload: 2 }, { keys: KEY });
    const holder = pg.connect(pg.owner, 1);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holding = holder.sql.begin(async (tx) => {
      await tx`select id from portcullis_jobs where id = ${first} for update`;
      locked();
      await held;
    });
    await isLocked;
    const { runs, handler } = recorder();
    const w = worker(handler);
    expect(await w.runNext()).toMatchObject({ ran: true, id: second, status: "done" });
    expect(await w.runNext()).toEqual({ ran: false });
    release();
    await holding;
    expect(await w.runNext()).toMatchObject({ ran: true, id: first, status: "done" });
    expect(runs.map((r) => r.payload)).toEqual([2, 1]);
  });

  it("two workers on their own connections, draining at once, never take the same job", async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 30; i++)
      ids.add(await enqueueForTenant(app.db, i % 2 ? acme : globex, { type: "order.confirm", payload: i }, { keys: KEY }));
    const taken: Record<string, string[]> = { a: [], b: [] };
    const make = () => {
      const conn = pg.connect(pg.app, 2);
      return jobWorker({
        db: conn.db,
        keys: KEY,
        handlers: {
          "order.confirm": async (tx) => {
            // Hold the job a moment, so the other worker's claims interleave with this one's.
            await tx.execute("select pg_sleep(0.005)");
          },
        },
      });
    };
    const [wa, wb] = [make(), make()];
    const drain = async (w: ReturnType<typeof make>, name: "a" | "b") => {
      for (let r = await w.runNext(); r.ran; r = await w.runNext()) if (r.ran) taken[name]?.push(r.id);
    };
    await Promise.all([drain(wa, "a"), drain(wb, "b")]);
    const all = [...(taken.a ?? []), ...(taken.b ?? [])];
    expect(new Set(all).size).toBe(all.length);
    expect(new Set(all)).toEqual(ids);
    const statuses =
      await owner.sql`select status, count(*)::int as n from portcullis_jobs where id = any(${[...ids]}::bigint[]) group by status`;
    expect(statuses).toEqual([{ status: "done", n: 30 }]);
  });

  it("a failing job is retried later, then marked failed after its last attempt", async () => {
    const id = await enqueueForTenant(app.db, acme, { type: "order.confirm", payload: {} }, { keys: KEY });
    const failing = jobWorker({
      db: app.db,
      keys: KEY,
      maxAttempts: 2,
      handlers: {
        "order.confirm": async () => {
          throw new Error("mail server down");
        },
      },
    });
    expect(await failing.runNext()).toEqual({ ran: true, id, status: "retry", error: "mail server down" });
    // Backed off: not ready now.
    expect(await failing.runNext()).toEqual({ ran: false });
    await owner.sql`update portcullis_jobs set run_at = now() where id = ${id}`;
    expect(await failing.runNext()).toEqual({ ran: true, id, status: "failed", error: "mail server down" });
    expect(await statusOf(id)).toEqual({ status: "failed", last_error: "mail server down" });
    // A job of a type no handler knows fails at once as well (after its attempts).
    const unknown = await enqueueForTenant(app.db, acme, { type: "order.unknown" }, { keys: KEY });
    const r = await jobWorker({ db: app.db, keys: KEY, maxAttempts: 1, handlers: {} }).runNext();
    expect(r).toMatchObject({ ran: true, id: unknown, status: "failed" });
  });
});
