/**
 * `npm run bench:million`: Portcullis with 1,000,000 tenants (`-- --tenants N` for
 * another count). Seeds a throw-away Postgres database and a Redis of its own through
 * a bounded bulk path (10,000 tenants per statement and per pipeline: hostname,
 * database server and binding, upstream, and their cache records), then measures:
 *
 * - Redis memory per tenant (host and tenant records);
 * - a cold host through Redis: a fresh router process asked 1,000 hosts it never saw;
 * - throughput: 10 tenants, 100,000 and all of them in rotation — same run,
 *   alternating, medians;
 * - admin API latency with that table size (read, create, update, one page of the list).
 *
 * Tenants are on the enterprise plan with a rate limit they never reach: the limiter
 * runs on every request, and no request is refused.
 *
 * Writes bench/results/<time>-million.md and docs/performance.md's section between
 * `<!-- million:start -->` and `<!-- million:end -->`.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getRequestListener } from "@hono/node-server";
import { Redis } from "ioredis";
import pino from "pino";
import { request } from "undici";
import { createControlPlane, loadControlPlaneConfig, openDatabase } from "@portcullis/control-plane";
import { CACHE, confusableSkeleton, RedisStore, storedEntry } from "@portcullis/shared";
import { loadTenantRecords } from "../control-plane/src/records/index.ts";
import { SECRETS } from "../test/helpers/stack.ts";
import { spawnService } from "../test/helpers/service-process.ts";
import { freePort, RedisServer } from "../test/helpers/redis-server.ts";
import { ThrowawayDatabase } from "./faults/stack.ts";
import { type HostSet, hostName, runAutocannon, summarize } from "./load.ts";

const args = process.argv.slice(2);
const N = Number(args[args.indexOf("--tenants") + 1] ?? "") || 1_000_000;
const BATCH = 10_000;
const DOMAIN = "million.test";
const HOSTS = (count: number): HostSet => ({ prefix: "h", count, domain: DOMAIN });
const pad = (i: number) => String(i).padStart(7, "0");
// Limits on, as in production, but never reached: this measures routing, not refusals.
const LIMITS = JSON.stringify({ requestsPerSecond: 1_000_000, burst: 1_000_000 });
const started = Date.now();
const log = (line: string) => console.log(`[million ${((Date.now() - started) / 1000).toFixed(1)} s] ${line}`);

// An upstream for every tenant (they share it: this measures the router, not apps).
const upstream = createServer((_req, res) => res.end("ok"));
await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", () => r()));
const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

const redis = await RedisServer.start();
const db = new ThrowawayDatabase(process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres");
const tmp = mkdtempSync(join(tmpdir(), "pc-million-"));
await db.create(tmp);
const sql = db.sql as NonNullable<typeof db.sql>;
const client = new Redis(redis.url);
const prefix = "pc:v1:";
let router: Awaited<ReturnType<typeof spawnService<{ port: number }>>> | null = null;

async function usedMemory(): Promise<number> {
  const info = await client.info("memory");
  return Number(/used_memory:(\d+)/.exec(info)?.[1]);
}

try {
  // 1. Postgres, 10,000 tenants per statement.
  log(`seeding ${N.toLocaleString("en")} tenants into Postgres in batches of ${BATCH.toLocaleString("en")}`);
  const memoryBefore = await usedMemory();
  let template: string | null = null;
  const pgStarted = performance.now();
  let redisMs = 0;
  for (let from = 0; from < N; from += BATCH) {
    const n = Math.min(BATCH, N - from);
    const idx = Array.from({ length: n }, (_, k) => from + k);
    const ids = idx.map((i) => `ten_m${pad(i)}`);
    const hosts = idx.map((i) => hostName(HOSTS(N), i));
    const rows = await sql.begin(async (tx) => {
      const tenants = await tx`
        insert into tenants (id, slug, name, plan, limits, version)
        select id, slug, name, 'enterprise', ${LIMITS}::jsonb, nextval('routing_version_seq')
        from unnest(${ids}::text[], ${idx.map((i) => `m${pad(i)}`)}::text[], ${idx.map((i) => `Million m${pad(i)}`)}::text[])
          as t(id, slug, name)
        returning id, version`;
      const named = await tx`
        insert into hostnames (id, tenant_id, hostname, kind, status, verification_token, skeleton, verified_at, version)
        select 'hst_m' || substr(tenant_id, 6), tenant_id, hostname, 'platform', 'verified', 'seeded', skeleton, now(),
               nextval('routing_version_seq')
        from unnest(${ids}::text[], ${hosts}::text[], ${hosts.map(confusableSkeleton)}::text[]) as h(tenant_id, hostname, skeleton)
        returning hostname, tenant_id, version`;
      await tx`
        insert into database_servers (id, address)
        select 'dbs_m' || substr(id, 6), 'db-m' || substr(id, 6) || '.million.internal:5432' from unnest(${ids}::text[]) as s(id)`;
      await tx`
        insert into database_bindings (tenant_id, server_id, database)
        select id, 'dbs_m' || substr(id, 6), 'app' from unnest(${ids}::text[]) as b(id)`;
      await tx`
        insert into upstreams (id, tenant_id, url, position)
        select 'ups_m' || substr(id, 6), id, ${upstreamUrl}, 0 from unnest(${ids}::text[]) as u(id)`;
      return { tenants, named };
    });
    if (template === null) {
      // One tenant's record as the control plane builds it: the shape of every other.
      const db0 = await openDatabase({ url: db.url(), dataDir: "" });
      const record = (await loadTenantRecords(db0.db, [ids[0] as string])).get(ids[0] as string);
      await db0.close();
      if (!record) throw new Error("the first seeded tenant has no record");
      template = JSON.stringify(record.record);
    }
    // 2. Their cache records in Redis, one pipeline per batch (fresh for the whole run).
    const t0 = performance.now();
    const ttl = { redisTtlMs: 3_600_000, redisStaleIfErrorMs: 0 };
    const pipeline = client.pipeline();
    for (const t of rows.tenants) {
      const tenant = JSON.parse((template as string).replaceAll("m0000000", `m${t.id.slice(5)}`));
      const stored = storedEntry({ v: Number(t.version), tenant }, ttl);
      pipeline.set(`${prefix}${CACHE.tenant.key(t.id)}`, stored.json, "PX", stored.ttlMs);
    }
    for (const h of rows.named) {
      const stored = storedEntry({ v: Number(h.version), tenantId: h.tenant_id }, ttl);
      pipeline.set(`${prefix}${CACHE.host.key(h.hostname)}`, stored.json, "PX", stored.ttlMs);
    }
    await pipeline.exec();
    redisMs += performance.now() - t0;
    if ((from / BATCH) % 10 === 0) log(`${(from + n).toLocaleString("en")} seeded`);
  }
  // As after any bulk import: fresh statistics, or the planner guesses from empty tables.
  await sql`analyze`;
  const seedSeconds = (performance.now() - pgStarted - redisMs) / 1000;
  const memoryPerTenant = ((await usedMemory()) - memoryBefore) / N;
  log(
    `Postgres ${seedSeconds.toFixed(0)} s, Redis ${(redisMs / 1000).toFixed(0)} s; Redis ${memoryPerTenant.toFixed(0)} B per tenant`,
  );

  // 3. The control plane (admin API, key service) in this process, a router of its own.
  const env = {
    ...SECRETS,
    NODE_ENV: "production",
    PLATFORM_DOMAIN: DOMAIN,
    REDIS_URL: redis.url,
    REDIS_PREFIX: prefix,
    DATABASE_URL: db.url(),
    LOG_LEVEL: "warn",
  };
  const database = await openDatabase({ url: db.url(), dataDir: "" });
  const store = new RedisStore({ url: redis.url, prefix });
  const cp = await createControlPlane(loadControlPlaneConfig(env), {
    store,
    database,
    log: pino({ level: "warn" }),
    auditConsumer: false,
    jobs: false,
  });
  const adminServer = createServer(getRequestListener(cp.admin.fetch));
  const keyServer = createServer(getRequestListener(cp.keyService.fetch));
  await new Promise<void>((r) => adminServer.listen(0, "127.0.0.1", () => r()));
  await new Promise<void>((r) => keyServer.listen(0, "127.0.0.1", () => r()));
  const adminPort = (adminServer.address() as AddressInfo).port;
  router = await spawnService(
    "router",
    "router/src/main.ts",
    {
      ...env,
      ROUTER_PORT: String(await freePort()),
      ROUTER_OPS_PORT: String(await freePort()),
      ROUTER_HOST: "127.0.0.1",
      KEY_SERVICE_URL: `http://127.0.0.1:${(keyServer.address() as AddressInfo).port}`,
      // The audit stream would fill this Redis during the load runs: measured by npm run bench.
      ROUTER_AUDIT: "off",
    },
    (output) => {
      const m = /router listening on :(\d+)/.exec(output);
      return m ? { port: Number(m[1]) } : null;
    },
  );
  const port = router.ports.port;

  // 4. Cold hosts through Redis: never asked before, spread over the whole table.
  const cold: number[] = [];
  for (let k = 0; k < 1_000; k++) {
    const i = Math.floor((k / 1_000) * N) + 1;
    const t0 = performance.now();
    const res = await request(`http://127.0.0.1:${port}/`, { headers: { host: hostName(HOSTS(N), Math.min(i, N - 1)) } });
    await res.body.dump();
    if (res.statusCode !== 200) throw new Error(`cold host answered ${res.statusCode}`);
    cold.push(performance.now() - t0);
  }
  const coldStats = summarize(cold);
  log(`cold host through Redis: p50 ${coldStats.p50.toFixed(2)} ms, p99 ${coldStats.p99.toFixed(2)} ms`);

  // 5. Warm throughput, alternating, medians.
  const load = (count: number, seconds = 5) =>
    runAutocannon({ port, seconds, connections: 64, hosts: HOSTS(count), cpu: null, tmp });
  await load(Math.min(100_000, N), 10); // fills the router's memory with the first 100,000
  const sets = [...new Set([10, Math.min(100_000, N), N])];
  const runs = new Map<number, number[]>(sets.map((c) => [c, []]));
  for (let round = 0; round < 2; round++) {
    for (const count of sets) {
      const r = await load(count);
      if (r.errors > 0) log(`warning: ${r.errors} errors with ${count} tenants`);
      runs.get(count)?.push(r.rps);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const rps = new Map(sets.map((c) => [c, median(runs.get(c) ?? [])]));
  log(`throughput: ${sets.map((c) => `${c.toLocaleString("en")} tenants ${Math.round(rps.get(c) ?? 0)} rps`).join(", ")}`);

  // 6. Admin API latency with the table at that size.
  const admin = async (method: string, path: string, body?: unknown) => {
    const t0 = performance.now();
    const res = await request(`http://127.0.0.1:${adminPort}${path}`, {
      method: method as "GET",
      headers: { authorization: `Bearer ${SECRETS.ADMIN_TOKEN}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    await res.body.dump();
    if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode}`);
    return performance.now() - t0;
  };
  const timings: Record<string, number[]> = { read: [], create: [], update: [], list: [] };
  for (let k = 0; k < 200; k++) timings.read?.push(await admin("GET", `/v1/tenants/m${pad(Math.floor(Math.random() * N))}`));
  for (let k = 0; k < 50; k++) timings.create?.push(await admin("POST", "/v1/tenants", { slug: `late-${k}`, name: `Late ${k}` }));
  for (let k = 0; k < 50; k++)
    timings.update?.push(
      await admin("PATCH", `/v1/tenants/m${pad(Math.floor(Math.random() * N))}`, { limits: { requestsPerSecond: 100 + k } }),
    );
  for (let k = 0; k < 20; k++) timings.list?.push(await admin("GET", "/v1/tenants?limit=100"));
  const adminStats = Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, summarize(v)]));

  // 7. The record.
  const stamp = new Date().toISOString().replace(/:/g, "-").replace(/\..*/, "");
  const fmt = (x: number) => (x >= 100 ? Math.round(x).toLocaleString("en") : x.toFixed(2));
  const ratio = (c: number) => ((rps.get(c) ?? 0) / (rps.get(10) ?? 1)).toFixed(2);
  const md = [
    `Run of ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC (\`npm run bench:million\`, ${N.toLocaleString("en")} tenants, ${Math.round((Date.now() - started) / 1000)} s): one router process, control plane and key service in the harness's process, Postgres and a Redis of its own; load by autocannon (64 connections, 5 s, median of 2 alternating runs).`,
    "",
    "| measure | figure |",
    "| --- | --- |",
    `| seeding (bounded: ${BATCH.toLocaleString("en")} tenants per statement and per pipeline) | Postgres ${seedSeconds.toFixed(0)} s, Redis ${(redisMs / 1000).toFixed(0)} s |`,
    `| Redis memory per tenant (host and tenant records) | ${Math.round(memoryPerTenant).toLocaleString("en")} B |`,
    `| cold host through Redis (1,000 hosts never asked before) | p50 ${coldStats.p50.toFixed(2)} ms, p99 ${coldStats.p99.toFixed(2)} ms |`,
    `| warm, 10 tenants | ${fmt(rps.get(10) ?? 0)} req/s |`,
    `| 100,000 tenants in rotation | ${fmt(rps.get(100_000) ?? 0)} req/s (${ratio(100_000)}× 10 tenants) |`,
    `| all ${N.toLocaleString("en")} in rotation | ${fmt(rps.get(N) ?? 0)} req/s (${ratio(N)}× 10 tenants) |`,
    ...Object.entries(adminStats).map(
      ([k, s]) =>
        `| admin ${{ read: "GET /v1/tenants/:tenant", create: "POST /v1/tenants", update: "PATCH /v1/tenants/:tenant", list: "GET /v1/tenants?limit=100" }[k]} | p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms |`,
    ),
  ].join("\n");
  const file = join(import.meta.dirname, "results", `${stamp}-million.md`);
  writeFileSync(file, `# npm run bench:million — ${stamp}\n\n${md}\n`);
  const readme = join(import.meta.dirname, "..", "docs", "performance.md");
  const text = readFileSync(readme, "utf8");
  const a = text.indexOf("<!-- million:start -->");
  const b = text.indexOf("<!-- million:end -->");
  if (a !== -1 && b > a && N === 1_000_000)
    writeFileSync(readme, `${text.slice(0, a)}<!-- million:start -->\n${md}\n${text.slice(b)}`);
  console.log(`\n${md}\n\nwritten: ${file}`);
  await new Promise<void>((r) => adminServer.close(() => r()));
  await new Promise<void>((r) => keyServer.close(() => r()));
  await cp.close();
} finally {
  await router?.kill();
  client.disconnect();
  await redis.stop();
  await db.drop();
  upstream.close();
}
