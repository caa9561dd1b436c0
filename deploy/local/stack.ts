/**
 * `npm start`: the whole stack in one process — migrations, key service, control
 * plane, router, and two demo tenants, each with its own demo app (demo-app.ts, built
 * on @portcullis/sdk: an orders API on a database per tenant with row-level security).
 * With no DATABASE_URL it runs on embedded PGlite (the control plane under ./.data,
 * each demo tenant's database in memory); with no REDIS_URL on the in-process store.
 * Set both to run the same stack against real Postgres and Redis.
 */
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { getRequestListener } from "@hono/node-server";
import { createControlPlane, loadControlPlaneConfig, migrate, openDatabase } from "@portcullis/control-plane";
import { loadRouterConfig, startRouter } from "@portcullis/router";
import { contextKeyToken, MemoryStore, RedisStore, type Store } from "@portcullis/shared";
import { type DemoApp, startDemoApp } from "./demo-app.ts";
import { pgliteDatabases, postgresDatabases, type Seed } from "./demo-db.ts";

const env: Record<string, string | undefined> = { ...process.env };
// One set of secrets for every service of this process.
for (const name of ["ADMIN_TOKEN", "KEY_SERVICE_TOKEN", "CONTEXT_SIGNING_SECRET", "SESSION_SECRET"]) {
  if (!env[name]) env[name] = randomBytes(24).toString("hex");
}
const cpConfig = loadControlPlaneConfig(env);
const routerConfig = loadRouterConfig(env);
if (routerConfig.workers > 1)
  console.warn("stack: ROUTER_WORKERS applies to `node router/src/main.ts`; this one-process stack runs one router");

const database = await openDatabase({ url: cpConfig.databaseUrl, dataDir: `${cpConfig.dataDir}/pglite` });
console.log(`migrate: applying migrations (${database.kind})`);
await migrate(database);

let store: Store;
if (cpConfig.redis) {
  const redis = new RedisStore({ ...cpConfig.redis, prefix: cpConfig.redisPrefix });
  await redis.ready();
  store = redis;
} else store = new MemoryStore();

const cp = await createControlPlane(cpConfig, { store, database });
const listen = (fetch: Parameters<typeof getRequestListener>[0], port: number, host: string) =>
  new Promise<ReturnType<typeof createServer>>((resolve) => {
    const server = createServer(getRequestListener(fetch));
    server.listen(port, host, () => resolve(server));
  });
const keyServiceServer = await listen(cp.keyService.fetch, cpConfig.keyServicePort, cpConfig.keyServiceHost);
const adminServer = await listen(cp.admin.fetch, cpConfig.adminPort, cpConfig.adminHost);
// The control plane's consumer (started by createControlPlane) moves the router's
// audit stream into the database: PGlite and the in-process store by default.
const opsServer = await listen(cp.ops.fetch, cpConfig.opsPort, cpConfig.opsHost);
const keyServiceOpsServer = await listen(cp.keyServiceOps.fetch, cpConfig.keyServiceOpsPort, cpConfig.keyServiceOpsHost);
const router = await startRouter(routerConfig, { store });

// Demo tenants, each with its own app and its own database (as its binding says).
const secret = routerConfig.contextSigningSecret;
const demos = [
  {
    slug: "acme",
    name: "Acme Corp",
    plan: "pro",
    db: { server: "pg-acme.internal:5432", database: "acme" },
    orders: [
      { item: "Anvil", quantity: 3 },
      { item: "Rocket skates", quantity: 1 },
      { item: "Giant magnet", quantity: 2 },
    ],
  },
  {
    slug: "globex",
    name: "Globex Inc",
    plan: "free",
    db: { server: "pg-globex.internal:5432", database: "globex" },
    orders: [
      { item: "Hammock", quantity: 1 },
      { item: "Doomsday device", quantity: 1 },
    ],
  },
];
const upstreams: DemoApp[] = [];
const keys: Record<string, string> = {};
for (const demo of demos) {
  let tenant = await cp.tenants.get(demo.slug);
  if (!tenant.ok) {
    tenant = await cp.tenants.create({ slug: demo.slug, name: demo.name, plan: demo.plan });
    if (!tenant.ok) throw new Error(`creating demo tenant ${demo.slug}: ${tenant.code}`);
    await cp.tenants.putDatabase(demo.slug, demo.db);
  }
  const own = tenant.value.id;
  const seeds: Record<string, Seed> = { [`${demo.db.server}/${demo.db.database}`]: { tenantId: own, orders: demo.orders } };
  const role = "portcullis_demo_app";
  // Each demo app verifies with its own tenant's context key only (any version, so a
  // rotation through the admin API keeps the demo working): another tenant's
  // context never verifies here. The demo bindings name servers that do not exist:
  // with DATABASE_URL each becomes a database on that server, else an in-memory PGlite.
  const upstream = await startDemoApp({
    name: `${demo.slug}-app`,
    keys: (tenantId, version) => (tenantId === own ? contextKeyToken(secret, own, version) : null),
    role,
    open: cpConfig.databaseUrl
      ? postgresDatabases(cpConfig.databaseUrl, { prefix: "portcullis_demo_", role, seeds })
      : pgliteDatabases({ role, seeds }),
  });
  upstreams.push(upstream);
  await cp.tenants.putUpstreams(demo.slug, [upstream.url]);
  const key = await cp.tenants.createKey(demo.slug, { name: "quickstart" });
  if (key.ok) keys[demo.slug] = key.value.key;
}

const r = routerConfig.port;
const a = cpConfig.adminPort;
const d = cpConfig.platformDomain;
console.log(`
Portcullis is running (${database.kind}, ${store.kind} store).
  router   http://127.0.0.1:${r}     ops http://127.0.0.1:${router.opsPort}/readyz  /metrics
  admin    http://127.0.0.1:${a}     ops http://127.0.0.1:${cpConfig.opsPort}/metrics
  console  http://127.0.0.1:${a}/console   (log in with ADMIN_TOKEN below; API reference: /docs)
  key service :${cpConfig.keyServicePort}     ops http://127.0.0.1:${cpConfig.keyServiceOpsPort}/metrics

Try:
  curl -s http://acme.${d}:${r}/hello                       # acme's app, with the signed tenant context it verified
  curl -s http://acme.${d}:${r}/orders                      # acme's orders only (row-level security, per-tenant database)
  curl -s http://globex.${d}:${r}/orders                    # globex's orders only
  curl -s -H 'content-type: application/json' -d '{"item":"Tunnel paint","quantity":2}' http://acme.${d}:${r}/orders
  curl -s ${upstreams[0]?.url}/orders                         # 401: the app itself refuses what the router did not sign
  curl -s http://nobody.${d}:${r}/                          # 404 unknown_host: no default tenant
  curl -s -H 'Authorization: Bearer ${keys.acme}' http://${routerConfig.apiHostname}:${r}/v1/orders
  curl -s -H 'Authorization: Bearer ${keys.acme}' http://globex.${d}:${r}/   # 401: acme's key on globex
  curl -s -H 'Authorization: Bearer ${cpConfig.adminToken}' http://127.0.0.1:${a}/v1/tenants
  curl -s -H 'Authorization: Bearer ${cpConfig.adminToken}' 'http://127.0.0.1:${a}/v1/audit?decision=refuse&limit=5'
  curl -s -H 'Authorization: Bearer ${cpConfig.adminToken}' 'http://127.0.0.1:${a}/v1/explain?host=acme.${d}'

ADMIN_TOKEN=${cpConfig.adminToken}
(curl resolves *.localhost to 127.0.0.1 itself; with another client add: -H 'Host: acme.${d}' http://127.0.0.1:${r}/)
`);

const shutdown = async () => {
  await router.drain();
  adminServer.close();
  keyServiceServer.close();
  opsServer.close();
  keyServiceOpsServer.close();
  for (const u of upstreams) await u.close();
  await cp.close();
  await store.close();
  await database.close();
  process.exit(0);
};
process.once("SIGTERM", () => void shutdown());
process.once("SIGINT", () => void shutdown());
