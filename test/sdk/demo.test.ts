/**
 * The demo app (deploy/local/demo-app.ts) end to end: each demo tenant's own app,
 * keyed with the context key the admin API hands that tenant, behind the real router
 * (real Postgres, real Redis), on a database per tenant binding (a throwaway database
 * on the test Postgres). Through the router, acme and globex see disjoint orders, the
 * route guard finds no leak, a placed order is confirmed by a job in the tenant's
 * scope; called directly, the apps refuse an unsigned, forged, replayed or
 * misdirected request with 401. Then the PGlite default: RLS holds inside one
 * embedded database shared by two tenants.
 */
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkRouteIsolation, randomContextKey, signedHeaders } from "@portcullis/sdk/testing";
import { type DemoApp, startDemoApp } from "../../deploy/local/demo-app.ts";
import { pgliteDatabases, postgresDatabases } from "../../deploy/local/demo-db.ts";
import { TEST_POSTGRES_URL } from "../helpers/env.ts";
import { send } from "../helpers/http.ts";
import { eventually, startTestStack, type TestStack } from "../helpers/stack.ts";

type Tenant = Awaited<ReturnType<TestStack["tenant"]>>;

describe("the demo app behind the router (real Postgres, real Redis)", () => {
  const run = randomBytes(4).toString("hex");
  const prefix = `pc_test_demo_${run}_`;
  const role = `pc_test_demo_${run}_app`;
  let stack: TestStack;
  const apps: Record<string, DemoApp> = {};
  const keys: Record<string, string> = {};
  const t: Record<string, Tenant> = {};

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real" });
    for (const slug of ["acme", "globex"]) {
      const tenant = await stack.tenant(slug);
      t[slug] = tenant;
      const key = await stack.admin("GET", `/v1/tenants/${slug}/context-key`);
      expect(key.status).toBe(200);
      keys[slug] = key.json().key;
      const binding = `${tenant.db.server}/${tenant.db.database}`;
      const seeds = {
        [binding]: {
          tenantId: tenant.id,
          orders: [
            { item: `${slug} widget`, quantity: 2 },
            { item: `${slug} gadget`, quantity: 1 },
          ],
        },
      };
      apps[slug] = await startDemoApp({
        name: `${slug}-demo`,
        keys: [keys[slug] as string],
        role,
        open: postgresDatabases(TEST_POSTGRES_URL, { prefix, role, seeds }),
        jobIntervalMs: 50,
      });
      const put = await stack.admin("PUT", `/v1/tenants/${slug}/upstreams`, { urls: [apps[slug]?.url] });
      expect(put.status).toBe(200);
    }
    await stack.cp.publisher.flush();
    for (const r of stack.routers) r.resolver.clear();
  });
  afterAll(async () => {
    for (const a of Object.values(apps)) await a.close();
    await stack?.close();
    const root = postgres(TEST_POSTGRES_URL, { max: 1, onnotice: () => {} });
    for (const slug of ["acme", "globex"]) await root.unsafe(`drop database if exists ${prefix}${slug} with (force)`);
    await root.unsafe(`drop role if exists ${role}`);
    await root.end();
  });

  const orders = async (slug: string) => {
    const res = await stack.request(`${slug}.localhost`, "/orders");
    expect(res.status).toBe(200);
    return res.json() as { tenant: string; orders: { id: string; tenantId: string; item: string; status: string }[] };
  };

  it("lists each tenant's own orders through the router, and the two lists are disjoint", async () => {
    const acme = await orders("acme");
    const globex = await orders("globex");
    expect(acme.tenant).toBe("acme");
    expect(acme.orders.map((o) => o.item).sort()).toEqual(["acme gadget", "acme widget"]);
    expect(globex.orders.map((o) => o.item).sort()).toEqual(["globex gadget", "globex widget"]);
    expect(new Set(acme.orders.map((o) => o.tenantId))).toEqual(new Set([t.acme?.id]));
    const globexIds = new Set(globex.orders.map((o) => o.id));
    expect(acme.orders.filter((o) => globexIds.has(o.id))).toEqual([]);
    // The root path still shows the verified context, as the echo app did.
    const hello = await stack.request("acme.localhost", "/hello");
    expect(hello.json()).toMatchObject({ app: "acme-demo", signatureValid: true, tenant: { id: t.acme?.id, slug: "acme" } });
  });

  it("the route guard, run through the router, finds no way for one tenant to reach the other's orders", async () => {
    const report = await checkRouteIsolation({
      app: `http://127.0.0.1:${stack.port}`,
      tenants: [
        { name: "acme", host: "acme.localhost" },
        { name: "globex", host: "globex.localhost" },
      ],
      routes: ["/orders", "/orders/:id"],
    });
    expect(report.violations).toEqual([]);
    expect(report.requests).toBe(2 * 2 + 2 * 2 * 2);
  });

  it("a placed order is the tenant's alone, and its job confirms it in the tenant's scope", async () => {
    const placed = await stack.request("acme.localhost", "/orders", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ item: "tunnel paint", quantity: 3 }),
    });
    expect(placed.status).toBe(201);
    const id = placed.json().id as string;
    expect(placed.json()).toMatchObject({ tenantId: t.acme?.id, status: "placed" });
    expect((await stack.request("globex.localhost", `/orders/${id}`)).status).toBe(404);
    expect((await orders("globex")).orders.map((o) => o.id)).not.toContain(id);
    await eventually(
      async () => (await stack.request("acme.localhost", `/orders/${id}`)).json().status === "confirmed",
      15_000,
      50,
    );
    const bad = await stack.request("acme.localhost", "/orders", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ item: "", quantity: 0 }),
    });
    expect(bad.status).toBe(400);
  });

  it("called directly, an app refuses what the router did not sign for it: 401", async () => {
    const acmeApp = apps.acme as DemoApp;
    const globexApp = apps.globex as DemoApp;
    const context = { id: t.acme?.id as string, slug: "acme", db: "pg-acme.internal:5432/acme" };
    const code = async (port: number, host: string, headers: Record<string, string>) => {
      const res = await send(port, host, "/orders", { headers });
      return `${res.status} ${res.status === 401 ? res.json().error.code : ""}`;
    };
    // Control: a correctly signed direct call is served (so the refusals below are about the signature).
    const valid = signedHeaders({ key: keys.acme as string, tenant: context, host: "acme.localhost", target: "/orders" });
    expect(await code(acmeApp.port, "acme.localhost", valid)).toBe("200 ");
    expect(await code(acmeApp.port, "acme.localhost", {})).toBe("401 missing_signature");
    const forged = signedHeaders({ key: randomContextKey(1), tenant: context, host: "acme.localhost", target: "/orders" });
    expect(await code(acmeApp.port, "acme.localhost", forged)).toBe("401 bad_signature");
    // Acme's valid signature replayed on Globex's host: refused by globex's app (another key) and by acme's own (another host).
    expect(await code(globexApp.port, "globex.localhost", { ...valid, host: "globex.localhost" })).toBe("401 bad_signature");
    expect(await code(acmeApp.port, "globex.localhost", { ...valid, host: "globex.localhost" })).toBe("401 bad_signature");
    // Globex's app given acme's context for acme's host: not its key.
    expect(await code(globexApp.port, "acme.localhost", valid)).toBe("401 bad_signature");
  });
});

describe("the demo app on its PGlite default", () => {
  let app: DemoApp;
  const key = randomContextKey();
  const role = "portcullis_demo_app";
  // Two tenants bound to the same embedded database: only RLS keeps them apart there.
  const db = "pg-shared.internal:5432/shared";
  const acme = { id: "ten_acme", slug: "acme", db };
  const globex = { id: "ten_globex", slug: "globex", db };

  beforeAll(async () => {
    app = await startDemoApp({
      name: "pglite-demo",
      keys: key,
      role,
      open: pgliteDatabases({ role, seeds: { [db]: { tenantId: acme.id, orders: [{ item: "anvil", quantity: 1 }] } } }),
      jobIntervalMs: 50,
    });
  });
  afterAll(async () => {
    await app?.close();
  });

  const call = (tenant: typeof acme, method: string, target: string, body?: unknown) =>
    send(app.port, `${tenant.slug}.localhost`, target, {
      method,
      headers: {
        ...signedHeaders({ key, tenant, method, host: `${tenant.slug}.localhost`, target }),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  it("scopes each tenant's queries inside one embedded database", async () => {
    const a = (await call(acme, "GET", "/orders")).json();
    expect(a.orders.map((o: { item: string }) => o.item)).toEqual(["anvil"]);
    expect((await call(globex, "GET", "/orders")).json().orders).toEqual([]);
    const placed = await call(globex, "POST", "/orders", { item: "hammock", quantity: 1 });
    expect(placed.status).toBe(201);
    expect((await call(acme, "GET", "/orders")).json().orders.map((o: { item: string }) => o.item)).toEqual(["anvil"]);
    expect((await call(acme, "GET", `/orders/${placed.json().id}`)).status).toBe(404);
    await eventually(
      async () => (await call(globex, "GET", `/orders/${placed.json().id}`)).json().status === "confirmed",
      15_000,
      50,
    );
    // Unsigned: refused before any query.
    expect((await send(app.port, "acme.localhost", "/orders")).status).toBe(401);
  });
});
