/**
 * The route guard against fixture apps on real Postgres: the correct app (every query
 * in withTenant, under forced RLS) passes, by fetch handler and over HTTP; each
 * deliberately broken app is caught with the violation that names its bug — a listing
 * that reads as the table's owner without withTenant on a table without FORCE, an
 * item route answering 403 instead of 404, a route that answers another tenant's row,
 * and an owner that has no rows to check.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TenantEnv, verify, withTenant } from "@portcullis/sdk";
import {
  assertRouteIsolation,
  honoRoutes,
  checkRouteIsolation,
  type GuardTenant,
  randomContextKey,
  type TestTenant,
} from "@portcullis/sdk/testing";
import { type Connection, type SdkTestDatabase, sdkTestDatabase } from "./db.ts";

let pg: SdkTestDatabase;
let owner: Connection;
let app: Connection;
const KEYS: Record<string, string> = {
  ten_acme: randomContextKey(),
  ten_globex: randomContextKey(),
  ten_empty: randomContextKey(),
};
let tenants: Record<string, GuardTenant>;

beforeAll(async () => {
  pg = await sdkTestDatabase();
  owner = pg.connect(pg.owner);
  app = pg.connect(pg.app);
  // `orders` is guarded as it should be; `orders_unforced` has RLS enabled but not
  // forced, so its owner reads every row (the broken app's mistake).
  await owner.sql.unsafe(`
    create table orders (id text primary key, tenant_id text not null, item text not null);
    create table orders_unforced (id text primary key, tenant_id text not null, item text not null);
    insert into orders values ('ord_a1', 'ten_acme', 'anvil'), ('ord_a2', 'ten_acme', 'magnet'), ('ord_g1', 'ten_globex', 'hammock');
    insert into orders_unforced select * from orders;
    alter table orders enable row level security;
    alter table orders force row level security;
    create policy tenant_isolation on orders using (tenant_id = nullif(current_setting('app.tenant_id', true), ''));
    alter table orders_unforced enable row level security;
    create policy tenant_isolation on orders_unforced using (tenant_id = nullif(current_setting('app.tenant_id', true), ''));
    grant select on orders, orders_unforced to ${pg.app};`);
  const t = (id: string, slug: string): GuardTenant => {
    const context: TestTenant = { id, slug, db: pg.binding };
    return { name: slug, host: `${slug}.localhost`, key: KEYS[id] as string, context };
  };
  tenants = { acme: t("ten_acme", "acme"), globex: t("ten_globex", "globex"), empty: t("ten_empty", "empty") };
});
afterAll(async () => {
  await pg?.drop();
});

type Bug = "none" | "owner-without-withTenant" | "forbidden" | "unscoped-item" | "item-always-404";

/** The fixture app; `bug` plants one mistake. */
function fixture(bug: Bug) {
  const hono = new Hono<TenantEnv>();
  hono.use("*", verify({ keys: (tenantId, version) => (version === 1 ? (KEYS[tenantId] ?? null) : null) }));
  hono.get("/orders", async (c) => {
    const rows =
      bug === "owner-without-withTenant"
        ? // Reads as the owner, filtering in the app... and forgetting to.
          await owner.sql`select id, item from orders_unforced order by id`
        : await withTenant(app.db, c.var.tenant, (tx) => tx.execute("select id, item from orders order by id"));
    return c.json({ orders: rows });
  });
  hono.get("/orders/:orderId", async (c) => {
    const id = c.req.param("orderId");
    if (bug === "item-always-404") return c.json({ error: { code: "not_found", message: "No such order." } }, 404);
    const rows = await withTenant(app.db, c.var.tenant, (tx) =>
      tx.execute(`select id, item from orders where id = '${id.replaceAll("'", "''")}'`),
    );
    if (rows.length > 0) return c.json(rows[0]);
    if (bug === "forbidden") {
      const exists = await owner.sql`select 1 from orders_unforced where id = ${id}`;
      if (exists.length > 0) return c.json({ error: { code: "forbidden", message: "Not yours." } }, 403);
    }
    if (bug === "unscoped-item") {
      const [row] = await owner.sql`select id, item from orders_unforced where id = ${id}`;
      if (row) return c.json(row);
    }
    return c.json({ error: { code: "not_found", message: "No such order." } }, 404);
  });
  return hono;
}

const ROUTES = ["/orders", "/orders/:orderId"];

describe("the route guard (real Postgres)", () => {
  it("passes the correct app, both ways, and every request it made was checked", async () => {
    const report = await assertRouteIsolation({
      app: fixture("none").fetch,
      tenants: [tenants.acme as GuardTenant, tenants.globex as GuardTenant],
      routes: ROUTES,
    });
    // Each way: 2 listings, and per id of the owner its own read and the other's.
    expect(report).toEqual({ ok: true, requests: 2 * 2 + (2 + 1) * 2, violations: [] });
  });

  it("takes a Hono app's own routes (honoRoutes), and refuses a route it cannot fill", async () => {
    const app = fixture("none");
    expect(honoRoutes(app)).toEqual(ROUTES);
    const report = await assertRouteIsolation({
      app: app.fetch,
      tenants: [tenants.acme as GuardTenant, tenants.globex as GuardTenant],
      routes: honoRoutes(app),
    });
    expect(report.ok).toBe(true);
    await expect(
      checkRouteIsolation({
        app: app.fetch,
        tenants: [tenants.acme as GuardTenant, tenants.globex as GuardTenant],
        routes: ["/customers/:customerId/orders/:orderId"],
      }),
    ).rejects.toThrow(/one :param per route/);
  });

  it("passes the correct app over HTTP (a base URL), item routes tried with several methods", async () => {
    const server: Server = createServer(getRequestListener(fixture("none").fetch));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const report = await checkRouteIsolation({
        app: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        tenants: [tenants.acme as GuardTenant, tenants.globex as GuardTenant],
        routes: ["/orders", { path: "/orders/:orderId", methods: ["GET", "HEAD"] }],
      });
      expect(report.violations).toEqual([]);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it("catches a listing that reads as the owner without withTenant on a table without FORCE", async () => {
    const report = await checkRouteIsolation({
      app: fixture("owner-without-withTenant").fetch,
      tenants: [tenants.acme as GuardTenant, tenants.globex as GuardTenant],
      routes: ROUTES,
    });
    expect(report.ok).toBe(false);
    const leaks = report.violations.filter((v) => v.kind === "leak_in_list");
    expect(leaks.map((v) => `${v.as} sees ${v.owner}`).sort()).toEqual(["acme sees globex", "globex sees acme"]);
    expect(leaks.find((v) => v.as === "globex")?.detail).toContain("ord_a1, ord_a2");
  });

  it("catches an item route that answers 403 (the row exists) instead of 404", async () => {
    const report = await checkRouteIsolation({
      app: fixture("forbidden").fetch,
      tenants: [tenants.acme as GuardTenant, tenants.globex as GuardTenant],
      routes: ROUTES,
      bothWays: false,
    });
    expect(report.violations.map((v) => [v.kind, v.as, v.path, v.status])).toEqual([
      ["forbidden_not_404", "globex", "/orders/ord_a1", 403],
      ["forbidden_not_404", "globex", "/orders/ord_a2", 403],
    ]);
    await expect(
      assertRouteIsolation({
        app: fixture("forbidden").fetch,
        tenants: [tenants.acme as GuardTenant, tenants.globex as GuardTenant],
        routes: ROUTES,
      }),
    ).rejects.toThrow(/tenant isolation violated \(3\):\n {2}forbidden_not_404: globex GET \/orders\/ord_a1 -> 403/);
  });

  it("catches an item route that hands out another tenant's row", async () => {
    const report = await checkRouteIsolation({
      app: fixture("unscoped-item").fetch,
      tenants: [tenants.acme as GuardTenant, tenants.globex as GuardTenant],
      routes: ROUTES,
    });
    expect(report.violations.map((v) => `${v.kind} ${v.as} ${v.path}`)).toEqual([
      "leak_by_id globex /orders/ord_a1",
      "leak_by_id globex /orders/ord_a2",
      "leak_by_id acme /orders/ord_g1",
    ]);
  });

  it("fails when the owner has no rows (it would prove nothing) or cannot read its own", async () => {
    const report = await checkRouteIsolation({
      app: fixture("none").fetch,
      tenants: [tenants.empty as GuardTenant, tenants.acme as GuardTenant],
      routes: ROUTES,
      bothWays: false,
    });
    expect(report.violations.map((v) => v.kind)).toEqual(["no_rows"]);
    // Unsigned requests (no key): every call is refused by verify, the owner's too.
    const unsigned = await checkRouteIsolation({
      app: fixture("none").fetch,
      tenants: [
        { name: "acme", host: "acme.localhost" },
        { name: "globex", host: "globex.localhost" },
      ],
      routes: ROUTES,
      bothWays: false,
    });
    expect(unsigned.violations.map((v) => `${v.as} ${v.kind} ${v.status}`)).toEqual([
      "acme unexpected_status 401",
      "acme no_rows 401",
      "globex unexpected_status 401",
    ]);
    // An item route that answers 404 to everyone looks isolated, but is not checked: the owner's own read fails.
    const broken = await checkRouteIsolation({
      app: fixture("item-always-404").fetch,
      tenants: [tenants.acme as GuardTenant, tenants.globex as GuardTenant],
      routes: ROUTES,
      bothWays: false,
    });
    expect(broken.violations.map((v) => `${v.kind} ${v.as} ${v.path}`)).toEqual([
      "own_row_unreadable acme /orders/ord_a1",
      "own_row_unreadable acme /orders/ord_a2",
    ]);
  });
});
