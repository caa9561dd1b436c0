/**
 * Row-level security through the SDK, on real Postgres: `withTenant` scopes every
 * statement for a role that is not the table's owner, FORCE scopes the owner too, a
 * query outside `withTenant` sees nothing, the policy's WITH CHECK stops writes of
 * another tenant's rows, and only a verified tenant opens a scope. Plus the migration
 * statements (quoting, a uuid column) and the CI check.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  checkTenantRls,
  PortcullisSdkError,
  quoteIdent,
  type Tenant,
  tenantRlsSql,
  tenantRlsStatements,
  withTenant,
} from "@portcullis/sdk";
import { randomContextKey, verifiedTenant } from "@portcullis/sdk/testing";
import { type Connection, type SdkTestDatabase, sdkTestDatabase } from "./db.ts";

const KEY = randomContextKey();
let pg: SdkTestDatabase;
let owner: Connection;
let app: Connection;
let superuser: Connection;
let acme: Tenant;
let globex: Tenant;

/** The SQLSTATE of a failed statement (drizzle wraps the driver's error as its cause). */
async function sqlState(run: Promise<unknown>): Promise<string> {
  try {
    await run;
  } catch (error) {
    return String((error as { cause?: { code?: string } }).cause?.code ?? (error as { code?: string }).code);
  }
  return "no error";
}

const items = (rows: readonly Record<string, unknown>[]) => rows.map((r) => r.item).sort();

beforeAll(async () => {
  pg = await sdkTestDatabase();
  owner = pg.connect(pg.owner);
  app = pg.connect(pg.app, 1);
  superuser = pg.connect();
  acme = verifiedTenant(KEY, { id: "ten_acme", slug: "acme", db: pg.binding });
  globex = verifiedTenant(KEY, { id: "ten_globex", slug: "globex", db: pg.binding });
  await owner.sql.unsafe(`
    create table orders (id text primary key, tenant_id text not null, item text not null);
    insert into orders values ('o1', 'ten_acme', 'anvil'), ('o2', 'ten_acme', 'magnet'), ('o3', 'ten_globex', 'hammock');
    grant select, insert, update, delete on orders to ${pg.app};`);
  // ENABLE and the policy, not yet FORCE: the first tests show what FORCE adds.
  const [enable, , drop, policy] = tenantRlsStatements("orders");
  for (const s of [enable, drop, policy]) await owner.sql.unsafe(s as string);
});
afterAll(async () => {
  await pg?.drop();
});

describe("withTenant and row-level security (real Postgres)", () => {
  it("scopes every statement of a role that is not the owner to the verified tenant", async () => {
    const select = (t: Tenant) => withTenant(app.db, t, (tx) => tx.execute("select item from orders"));
    expect(items(await select(acme))).toEqual(["anvil", "magnet"]);
    expect(items(await select(globex))).toEqual(["hammock"]);
    // A WHERE that asks for another tenant's row finds nothing: the database decides.
    const other = await withTenant(app.db, acme, (tx) => tx.execute("select * from orders where id = 'o3'"));
    expect(other).toHaveLength(0);
  });

  it("without withTenant a query sees no rows, and the setting does not outlive the transaction on a pooled connection", async () => {
    expect(await app.sql`select * from orders`).toHaveLength(0);
    await withTenant(app.db, acme, (tx) => tx.execute("select 1"));
    // The pool has one connection: the same one that just ran acme's transaction.
    expect(await app.sql`select current_setting('app.tenant_id', true) as v`).toEqual([{ v: "" }]);
    expect(await app.sql`select * from orders`).toHaveLength(0);
  });

  it("the owner is not scoped until FORCE ROW LEVEL SECURITY; then it is, inside and outside withTenant", async () => {
    expect(await owner.sql`select * from orders`).toHaveLength(3);
    await owner.sql.unsafe(tenantRlsStatements("orders")[1] as string);
    expect(await owner.sql`select * from orders`).toHaveLength(0);
    expect(items(await withTenant(owner.db, globex, (tx) => tx.execute("select item from orders")))).toEqual(["hammock"]);
  });

  it("WITH CHECK: inside acme's scope, no row of globex can be written or moved there", async () => {
    // 42501: "new row violates row-level security policy".
    expect(
      await sqlState(withTenant(app.db, acme, (tx) => tx.execute("insert into orders values ('o4', 'ten_globex', 'x')"))),
    ).toBe("42501");
    expect(
      await sqlState(withTenant(app.db, acme, (tx) => tx.execute("update orders set tenant_id = 'ten_globex' where id = 'o1'"))),
    ).toBe("42501");
    // Its own rows it can write.
    expect(
      await sqlState(withTenant(app.db, acme, (tx) => tx.execute("insert into orders values ('o5', 'ten_acme', 'x')"))),
    ).toBe("no error");
    await withTenant(app.db, acme, (tx) => tx.execute("delete from orders where id = 'o5'"));
    // Globex's rows are out of reach for a write as well: zero rows touched.
    const deleted = await withTenant(app.db, acme, (tx) => tx.execute("delete from orders where id = 'o3' returning id"));
    expect(deleted).toHaveLength(0);
    expect(await superuser.sql`select id, tenant_id from orders order by id`).toEqual([
      { id: "o1", tenant_id: "ten_acme" },
      { id: "o2", tenant_id: "ten_acme" },
      { id: "o3", tenant_id: "ten_globex" },
    ]);
  });

  it("refuses a tenant it did not verify, however complete it looks", async () => {
    const lookalike = { ...acme };
    await expect(withTenant(app.db, lookalike, async () => "ran")).rejects.toMatchObject({
      name: "PortcullisSdkError",
      code: "unverified_tenant",
    });
    await expect(withTenant(app.db, JSON.parse(JSON.stringify(acme)), async () => "ran")).rejects.toBeInstanceOf(
      PortcullisSdkError,
    );
    expect(Object.isFrozen(acme)).toBe(true);
  });

  it("a superuser is never scoped, even with FORCE; withTenant's role option runs the transaction as the app's role", async () => {
    expect(await superuser.sql`select * from orders`).toHaveLength(3);
    const unscoped = await withTenant(superuser.db, acme, (tx) => tx.execute("select item from orders"));
    expect(unscoped).toHaveLength(3);
    const scoped = await withTenant(superuser.db, acme, (tx) => tx.execute("select item, current_user as who from orders"), {
      role: pg.app,
    });
    expect(items(scoped)).toEqual(["anvil", "magnet"]);
    expect(scoped[0]?.who).toBe(pg.app);
    // SET LOCAL: the connection is back to the superuser afterwards.
    expect(await superuser.sql`select current_user as who`).toEqual([{ who: "postgres" }]);
  });
});

describe("the migration statements and the CI check (real Postgres)", () => {
  it("quotes identifiers, and a uuid tenant column works with the setting unset (no cast error) and set", async () => {
    expect(quoteIdent('we"ird')).toBe('"we""ird"');
    expect(() => quoteIdent("")).toThrow(PortcullisSdkError);
    expect(() => quoteIdent("x".repeat(64))).toThrow(/identifier/);
    expect(() => tenantRlsStatements("t", { columnType: "uuid; drop table orders" })).toThrow(PortcullisSdkError);
    const tenantUuid = "7d0e2a4c-0b5e-4a57-9a3e-7c1f0d9b2a11";
    const t = verifiedTenant(KEY, { id: tenantUuid, slug: "uuidco", db: pg.binding });
    await owner.sql.unsafe(`
      create schema "odd schema";
      create table "odd schema"."line ""items""" (id int primary key, tenant_id uuid not null);
      insert into "odd schema"."line ""items""" values (1, '${tenantUuid}'), (2, gen_random_uuid());
      grant usage on schema "odd schema" to ${pg.app};
      grant select on "odd schema"."line ""items""" to ${pg.app};`);
    await owner.sql.unsafe(tenantRlsSql('line "items"', { schema: "odd schema", columnType: "uuid" }));
    expect(await app.sql.unsafe(`select * from "odd schema"."line ""items"""`)).toHaveLength(0);
    const mine = await withTenant(app.db, t, (tx) => tx.execute(`select id from "odd schema"."line ""items"""`));
    expect(mine).toEqual([{ id: 1 }]);
  });

  it("lists every table with a tenant column that RLS does not fully guard, and passes a guarded one", async () => {
    await owner.sql.unsafe(`
      create table unguarded (id int, tenant_id text);
      create table not_forced (id int, tenant_id text);
      alter table not_forced enable row level security;
      create policy p on not_forced using (tenant_id = current_setting('app.tenant_id', true));
      create table open_policy (id int, tenant_id text);
      alter table open_policy enable row level security;
      alter table open_policy force row level security;
      create policy everything on open_policy using (true);
      create table no_tenant (id int);`);
    const problems = await checkTenantRls(owner.db);
    const found = problems.map((p) => `${p.code} ${p.subject}`).sort();
    expect(found).toEqual([
      "no_tenant_policy public.open_policy",
      "no_tenant_policy public.unguarded",
      "rls_disabled public.unguarded",
      "rls_not_forced public.not_forced",
      "rls_not_forced public.unguarded",
    ]);
    for (const p of problems) expect(p.message).toContain(p.subject);
    // The same check through postgres.js directly; after fixing the tables, nothing is left.
    for (const table of ["unguarded", "not_forced", "open_policy"])
      await owner.sql.unsafe(tenantRlsSql(table, { policy: table === "open_policy" ? "everything" : "tenant_isolation" }));
    expect(await checkTenantRls((q) => owner.sql.unsafe(q))).toEqual([]);
  });

  it("with checkRole, reports a connection whose role bypasses RLS", async () => {
    expect(await checkTenantRls(app.db, { checkRole: true })).toEqual([]);
    const problems = await checkTenantRls(superuser.db, { checkRole: true });
    expect(problems.map((p) => p.code)).toEqual(["role_bypasses_rls"]);
  });
});
