/**
 * The connection registry on real Postgres: one pool per database binding, found by
 * the tenant's signed `x-tenant-db`; bounded, closing the least recently used pool,
 * but only after the transactions running on it end; one open for concurrent first
 * uses; a failed open is retried.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DatabaseBinding, postgresJs, type Tenant, tenantDatabases } from "@portcullis/sdk";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { randomContextKey, verifiedTenant } from "@portcullis/sdk/testing";
import { type SdkTestDatabase, sdkTestDatabase } from "./db.ts";

const KEY = randomContextKey();
let one: SdkTestDatabase;
let two: SdkTestDatabase;
let acme: Tenant;
let globex: Tenant;

beforeAll(async () => {
  one = await sdkTestDatabase();
  two = await sdkTestDatabase({ owner: one.owner, app: one.app });
  for (const [pg, tenant, item] of [
    [one, "ten_acme", "anvil"],
    [two, "ten_globex", "hammock"],
  ] as const) {
    const owner = pg.connect(pg.owner);
    await owner.sql.unsafe(`
      create table orders (id serial primary key, tenant_id text not null, item text not null);
      insert into orders (tenant_id, item) values ('${tenant}', '${item}'), ('ten_other', 'not yours');
      alter table orders enable row level security;
      alter table orders force row level security;
      create policy tenant_isolation on orders using (tenant_id = nullif(current_setting('app.tenant_id', true), ''));
      grant select on orders to ${pg.app};`);
  }
  acme = verifiedTenant(KEY, { id: "ten_acme", slug: "acme", db: one.binding });
  globex = verifiedTenant(KEY, { id: "ten_globex", slug: "globex", db: two.binding });
});
afterAll(async () => {
  await two?.drop();
  await one?.drop();
});

/** postgresJs, recording opens and closes. */
function counted(app: string) {
  const opened: string[] = [];
  const closed: string[] = [];
  const waiting: (() => void)[] = [];
  /** Resolves once `n` pools were closed. */
  const closedCount = (n: number) =>
    new Promise<void>((resolve) => {
      const check = () => (closed.length >= n ? resolve() : waiting.push(check));
      check();
    });
  const base = postgresJs((b: DatabaseBinding) => `postgres://${app}@${b.server}/${b.database}`);
  const open = (b: DatabaseBinding) => {
    opened.push(b.database);
    const o = base(b);
    return {
      db: o.db,
      close: async () => {
        // Recorded when asked: postgres.js would let a running transaction finish anyway.
        closed.push(b.database);
        for (const w of waiting.splice(0)) w();
        await o.close();
      },
    };
  };
  return { opened, closed, open, closedCount };
}

const itemsOf = (
  db: { withTenant: (t: Tenant, fn: (tx: PostgresJsDatabase) => Promise<unknown>) => Promise<unknown> },
  t: Tenant,
) => db.withTenant(t, (tx) => tx.execute("select item from orders")) as Promise<{ item: string }[]>;

describe("tenantDatabases (real Postgres)", () => {
  it("runs each tenant on the database its binding names, scoped there by RLS", async () => {
    const c = counted(one.app);
    const dbs = tenantDatabases({ open: c.open });
    try {
      expect((await itemsOf(dbs, acme)).map((r) => r.item)).toEqual(["anvil"]);
      expect((await itemsOf(dbs, globex)).map((r) => r.item)).toEqual(["hammock"]);
      expect(dbs.open).toEqual([one.binding, two.binding]);
    } finally {
      await dbs.close();
    }
    expect(c.closed.sort()).toEqual([one.name, two.name].sort());
  });

  it("opens a binding once for concurrent first uses", async () => {
    const c = counted(one.app);
    const dbs = tenantDatabases({ open: c.open });
    try {
      await Promise.all(Array.from({ length: 8 }, () => itemsOf(dbs, acme)));
      expect(c.opened).toEqual([one.name]);
    } finally {
      await dbs.close();
    }
  });

  it("is bounded: the least recently used pool is closed, only after its running transaction ends", async () => {
    const c = counted(one.app);
    const dbs = tenantDatabases({ open: c.open, max: 1 });
    try {
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let started!: () => void;
      const inside = new Promise<void>((r) => (started = r));
      const running = dbs.withTenant(acme, async (tx) => {
        started();
        await held;
        return tx.execute("select item from orders");
      });
      await inside;
      // Globex's first use evicts acme's pool while acme's transaction is still open.
      expect((await itemsOf(dbs, globex)).map((r) => r.item)).toEqual(["hammock"]);
      expect(dbs.open).toEqual([two.binding]);
      expect(c.closed).toEqual([]);
      release();
      expect((await running).map((r) => r.item)).toEqual(["anvil"]);
      // Closed once its last transaction ended (right after, asynchronously).
      await c.closedCount(1);
      expect(c.closed).toEqual([one.name]);
      // Acme again: a new pool, globex's closed in turn.
      expect((await itemsOf(dbs, acme)).map((r) => r.item)).toEqual(["anvil"]);
      expect(c.opened).toEqual([one.name, two.name, one.name]);
    } finally {
      await dbs.close();
    }
  });

  it("refuses an unverified tenant and, after close, any use; a failed open is tried again", async () => {
    let attempts = 0;
    const c = counted(one.app);
    const dbs = tenantDatabases({
      open: (b) => {
        if (++attempts === 1) throw new Error("server down");
        return c.open(b);
      },
    });
    await expect(itemsOf(dbs, acme)).rejects.toThrow("server down");
    expect(dbs.open).toEqual([]);
    expect((await itemsOf(dbs, acme)).map((r) => r.item)).toEqual(["anvil"]);
    await expect(itemsOf(dbs, { ...acme })).rejects.toMatchObject({ code: "unverified_tenant" });
    await dbs.close();
    await expect(itemsOf(dbs, acme)).rejects.toMatchObject({ code: "registry_closed" });
    expect(() => tenantDatabases({ open: c.open, max: 0 })).toThrow(/max/);
  });
});
