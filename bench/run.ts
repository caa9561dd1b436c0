/**
 * `npm run bench`: Portcullis against a direct upstream, the Node proxies people
 * reach for, and nginx / haproxy when installed, all in one run on loopback.
 *
 * Beside the peers run two floors, each checking nothing. The node:http floor is a
 * node:http server forwarding with Portcullis's own client (bench/procs/peer-bare-h1.ts):
 * a target it misses is out of reach for any gateway on node:http on the machine of
 * the run. The design floor adds what Portcullis's design fixes on every request: Hono
 * on its Node adapter and the signed tenant context (docs/credentials.md)
 * (bench/procs/peer-design-floor.ts): a target it misses is out of reach for a gateway
 * built that way. The targets table shows what both reach on each measure.
 *
 * Every target routes on Host over the same 1,000 hostnames to one Node upstream
 * with a 100-byte body. The load generator (wrk on one core when installed, else
 * autocannon) is the same for all; targets alternate within each repetition and the
 * table shows medians. The proxy under test runs alone on the other core. Only
 * ratios within one run mean anything on a shared, noisy machine.
 *
 * Then: added latency at a fixed moderate rate, 100,000 cached tenants against 10,
 * memory per cached tenant, cold lookups through the store and through the key
 * service, the API-key path warm and cold, revocation propagation across two
 * routers sharing Redis, audit on against off, the audit pipeline's rate (the control
 * plane's consumer moving one router's events into the database; it is off during
 * every other run), and the noisy-neighbour figure (a quiet tenant's success rate and
 * p50/p99 alone and with a neighbour flooding at ten times its rate limit:
 * bench/noisy-neighbour.ts, run as its own process, 2 rounds of 2 s per phase with
 * --quick, 3 rounds of 3 s otherwise: about 20-40 s).
 *
 *   npm run bench            about 11 minutes
 *   npm run bench -- --quick about 2-3 minutes (one repetition, short runs)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { getRequestListener } from "@hono/node-server";
import { Redis } from "ioredis";
import pino from "pino";
import postgres from "postgres";
import { request } from "undici";
import { createControlPlane, loadControlPlaneConfig, migrate, openDatabase, type Database } from "@portcullis/control-plane";
import { AUDIT_STREAM, hashApiKey, hasStreams, MemoryStore, RedisStore, type Store } from "@portcullis/shared";
import {
  cpuSeconds,
  dropRedisPrefix,
  fixedRate,
  type NodeProc,
  pinned,
  routerTimes,
  shareUnderOneMs,
  startNode as startNodeProc,
} from "./processes.ts";
import { allocatedBytes, type CpuProfile, type HeapProfile, formatStageCosts, stageCosts, stageTable } from "./stage-costs.ts";
import { has, type HostSet, type LoadResult, runAutocannon, runWrk, summarize } from "./load.ts";

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const QUICK = argv.includes("--quick");
const P = QUICK
  ? {
      reps: 1,
      seconds: 3,
      warmup: 1,
      warmRound: 1,
      rate: 1_000,
      rateSeconds: 5,
      rateWarmup: 5,
      cold: 30,
      revocations: 10,
      big: 100_000,
    }
  : {
      reps: 3,
      seconds: 5,
      warmup: 1,
      warmRound: 2,
      rate: 1_000,
      rateSeconds: 10,
      // At 5 s every Node target still had a tail of several ms (JIT tiers, GC sizing);
      // at 15 s the node:http floor's p99 came down to its steady 1-1.5 ms.
      rateWarmup: 15,
      cold: 200,
      revocations: 30,
      big: 100_000,
    };
const option = (name: string) => {
  const i = argv.indexOf(name);
  return i === -1 ? undefined : argv[i + 1];
};
// Development only: fewer hostnames, a subset of targets, a CPU profile of the router.
const HOSTS = Number(option("--hosts") ?? 1_000);
const ONLY = option("--only")?.split(",");
// Extra Node flags for the main router process, e.g. --router-flags "--trace-gc".
const ROUTER_FLAGS = (option("--router-flags") ?? "").split(" ").filter((f) => f !== "");
const PROFILE = option("--profile");
const DOMAIN = "bench.test";
const API_HOST = `api.${DOMAIN}`;
const CONNECTIONS = 64;
const FLOOR_NAME = "node:http + Portcullis's h1 client (checks nothing)";
const DESIGN_FLOOR_NAME = "Hono adapter + signed context + h1 client (checks nothing)";
const BENCH_LIMITS = { requestsPerSecond: 1_000_000, burst: 1_000_000, monthlyRequests: null, concurrency: 100_000 };
const SECRETS = {
  ADMIN_TOKEN: randomBytes(16).toString("hex"),
  KEY_SERVICE_TOKEN: randomBytes(16).toString("hex"),
  CONTEXT_SIGNING_SECRET: randomBytes(16).toString("hex"),
  SESSION_SECRET: randomBytes(16).toString("hex"),
};

const log = (line: string) => process.stderr.write(`${line}\n`);
const notes: string[] = [];
const note = (line: string) => {
  notes.push(line);
  log(`note: ${line}`);
};

// ---- cores ------------------------------------------------------------------------------
// Core 1: the target under test, alone. Core 0: load generator, upstream, this process.
const TASKSET = has("taskset") && availableParallelism() >= 2;
const LOAD_CPU = TASKSET ? "0" : null;
const TARGET_CPU = TASKSET ? "1" : null;
if (TASKSET) spawn("taskset", ["-a", "-cp", "0", String(process.pid)], { stdio: "ignore" });
else note("taskset unavailable or one core: processes are not pinned");

// ---- processes ----------------------------------------------------------------------------
const children: ChildProcess[] = [];
const tmp = mkdtempSync(join(tmpdir(), "pc-bench-"));

const startNode = (file: string, cpu: string | null, options: unknown, nodeArgs: string[] = []) =>
  startNodeProc(children, file, cpu, options, nodeArgs);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await request(`http://127.0.0.1:${port}/`, { headers: { host: "t0000.bench.test" } });
      await r.body.dump();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`nothing listening on ${port}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function startNative(name: string, cmd: string, args: string[]): ChildProcess {
  const [c, a] = pinned(TARGET_CPU, cmd, args);
  const child = spawn(c, a, { stdio: ["ignore", "ignore", "inherit"] });
  child.on("error", (e) => log(`${name}: ${e.message}`));
  children.push(child);
  return child;
}

const hostNames = (n: number, prefix = "t") =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(4, "0")}.${DOMAIN}`);

async function startNginx(upstreamPort: number): Promise<{ port: number; pid: number | undefined } | null> {
  if (!has("nginx")) {
    note("nginx not installed: skipped (apt-get install -y nginx)");
    return null;
  }
  const port = await freePort();
  const dir = join(tmp, "nginx");
  mkdirSync(dir, { recursive: true });
  const map = hostNames(HOSTS)
    .map((h) => `    ${h} app;`)
    .join("\n");
  writeFileSync(
    join(dir, "nginx.conf"),
    `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  map_hash_max_size 4096;
  map_hash_bucket_size 64;
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 128; }
  map $host $pool {
    default "";
${map}
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    keepalive_requests 1000000;
    location / {
      if ($pool = "") { return 404; }
      proxy_pass http://$pool;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }
}
`,
  );
  const child = startNative("nginx", "nginx", ["-e", `${dir}/error.log`, "-p", dir, "-c", join(dir, "nginx.conf")]);
  await waitForPort(port);
  return { port, pid: child.pid };
}

async function startHaproxy(upstreamPort: number): Promise<{ port: number; pid: number | undefined } | null> {
  if (!has("haproxy")) {
    note("haproxy not installed: skipped (apt-get install -y haproxy)");
    return null;
  }
  const port = await freePort();
  const dir = join(tmp, "haproxy");
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "hosts.map"),
    `${hostNames(HOSTS)
      .map((h) => `${h} app`)
      .join("\n")}\n`,
  );
  writeFileSync(
    join(dir, "haproxy.cfg"),
    `global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:${port}
  use_backend %[req.hdr(host),lower,map(${dir}/hosts.map,none)]
backend app
  http-reuse always
  server s1 127.0.0.1:${upstreamPort}
backend none
  http-request deny deny_status 404
`,
  );
  const child = startNative("haproxy", "haproxy", ["-db", "-f", join(dir, "haproxy.cfg")]);
  await waitForPort(port);
  return { port, pid: child.pid };
}

// ---- stores -----------------------------------------------------------------------------
async function reachableRedis(url: string): Promise<boolean> {
  const r = new Redis(url, { lazyConnect: true, connectTimeout: 500, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on("error", () => {});
  try {
    await r.connect();
    return (await r.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

async function openBenchDatabase(): Promise<{ database: Database; label: string; drop: () => Promise<void> }> {
  const adminUrl = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  const name = `pc_bench_${randomBytes(5).toString("hex")}`;
  try {
    const admin = postgres(adminUrl, { max: 1, onnotice: () => {}, connect_timeout: 2 });
    await admin.unsafe(`create database ${name}`);
    await admin.end();
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    const database = await openDatabase({ url: url.toString(), dataDir: "" });
    await migrate(database);
    return {
      database,
      label: "Postgres",
      drop: async () => {
        await database.close();
        const a = postgres(adminUrl, { max: 1, onnotice: () => {} });
        await a.unsafe(`drop database if exists ${name} with (force)`);
        await a.end();
      },
    };
  } catch {
    const dir = join(tmp, "pglite");
    const database = await openDatabase({ dataDir: dir });
    await migrate(database);
    return { database, label: "embedded PGlite", drop: () => database.close() };
  }
}

// ---- measurement ----------------------------------------------------------------------------

interface Target {
  name: string;
  port: number;
  /** The process whose CPU time is charged to this target. */
  pid: number | undefined;
  hosts: HostSet;
  /** Called right before each run (the seeded-tenant rows refresh their cache). */
  before?: () => Promise<void>;
  group: "main" | "extra";
}

const load = has("wrk") ? runWrk : runAutocannon;
const LOADGEN = has("wrk")
  ? `wrk (1 thread, ${CONNECTIONS} connections${TASKSET ? ", pinned to core 0" : ""})`
  : `autocannon (${CONNECTIONS} connections)`;
if (!has("wrk")) note("wrk not installed: autocannon generates the load (apt-get install -y wrk)");

async function measure(t: Target): Promise<LoadResult & { cpuUs: number }> {
  await t.before?.();
  const base = { port: t.port, connections: CONNECTIONS, hosts: t.hosts, cpu: LOAD_CPU, tmp };
  await load({ ...base, seconds: P.warmup });
  const cpu0 = cpuSeconds(t.pid);
  const r = await load({ ...base, seconds: P.seconds });
  // A run that completed nothing counts as failed, not as infinitely cheap.
  if (r.requests === 0) return { ...r, errors: r.errors + 1, cpuUs: Number.NaN };
  // CPU time of the target per request: much steadier than req/s on a busy machine.
  return { ...r, cpuUs: ((cpuSeconds(t.pid) - cpu0) * 1e6) / r.requests };
}

/** The router's cache lookups by cache and tier (memory hits on the synchronous path are not counted). */
async function lookups(p: NodeProc): Promise<Record<string, number>> {
  const r = await request(`http://127.0.0.1:${p.opsPort}/metrics`);
  const text = await r.body.text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^portcullis_cache_lookups_total\{cache="(\w+)",tier="(\w+)"\} (\d+)/gm))
    out[`${m[1]}/${m[2]}`] = Number(m[3]);
  return out;
}

/** What moved between two snapshots of counters. */
function moved(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
  return out;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

interface Row {
  name: string;
  rps: number;
  p50ms: number;
  p99ms: number;
  cpuUs: number;
  runs: number[];
  errors: number;
  group: Target["group"];
}

async function main() {
  const started = Date.now();
  log(`bench: ${QUICK ? "quick" : "full"} run, ${P.reps} repetition(s) of ${P.seconds} s per target, load by ${LOADGEN}`);

  const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  const useRedis = await reachableRedis(redisUrl);
  const prefix = `pc:bench:${randomBytes(4).toString("hex")}:`;
  if (!useRedis)
    note(`Redis not reachable at ${redisUrl}: routers use their in-process store; revocation across routers skipped`);

  // Upstreams: one behind the proxies (core 0), one measured directly (core 1, alone).
  const upstream = await startNode("upstream.ts", LOAD_CPU, {});
  const direct = await startNode("upstream.ts", TARGET_CPU, {});
  const upstreamUrl = `http://127.0.0.1:${upstream.port}`;

  // Control plane in this process: tenants, key service, admin API.
  const db = await openBenchDatabase();
  const store: Store = useRedis ? new RedisStore({ url: redisUrl, prefix }) : new MemoryStore();
  const env = { ...SECRETS, PLATFORM_DOMAIN: DOMAIN, LOG_LEVEL: "silent" };
  const cp = await createControlPlane(loadControlPlaneConfig(env), {
    store,
    database: db.database,
    log: pino({ level: "silent" }),
    // The audit consumer (stream → database) is the control plane's work and runs on its
    // own machines in production. Here it would share the two cores with the targets
    // during Portcullis's runs only (a Postgres backend lands on the router's core), so
    // it is off for those runs and measured on its own below. The router still appends
    // every event to the durable stream on every run.
    auditConsumer: false,
  });
  const serve = (fetch: Parameters<typeof getRequestListener>[0]) =>
    new Promise<Server>((resolve) => {
      const s = createServer(getRequestListener(fetch));
      s.listen(0, "127.0.0.1", () => resolve(s));
    });
  const keyServer = await serve(cp.keyService.fetch);
  const adminServer = await serve(cp.admin.fetch);
  const keyServicePort = (keyServer.address() as AddressInfo).port;
  const adminPort = (adminServer.address() as AddressInfo).port;

  log(`bench: creating ${HOSTS} tenants in ${db.label}...`);
  const t0 = Date.now();
  const ids: string[] = [];
  const create = async (i: number) => {
    const slug = `t${String(i).padStart(4, "0")}`;
    const created = await cp.tenants.create({ slug, name: `Tenant ${i}` });
    if (!created.ok) throw new Error(`create ${slug}: ${created.code}`);
    ids[i] = created.value.id;
    await cp.tenants.putDatabase(slug, { server: `pg-${slug}.internal:5432`, database: slug });
    await cp.tenants.putUpstreams(slug, [upstreamUrl]);
    // Limits stay on (every request still takes the limiter's store round trip) but set
    // above any load here: this measures routing, not refusals (the noisy-neighbour
    // figure measures those). The plan's defaults (free: 20 req/s) would refuse most of it.
    const limited = await cp.tenants.patch(slug, { limits: BENCH_LIMITS });
    if (!limited.ok) throw new Error(`limits ${slug}: ${limited.code}`);
  };
  const parallel = db.label === "Postgres" ? 32 : 1;
  for (let i = 0; i < HOSTS; i += parallel)
    await Promise.all(Array.from({ length: Math.min(parallel, HOSTS - i) }, (_, k) => create(i + k)));
  const key = await cp.tenants.createKey("t0000", { name: "bench" });
  if (!key.ok) throw new Error("createKey failed");
  await cp.publisher.flush();
  log(`bench: tenants ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const routerEnv = (extra: Record<string, string> = {}) => ({
    ...SECRETS,
    PLATFORM_DOMAIN: DOMAIN,
    LOG_LEVEL: "silent",
    KEY_SERVICE_URL: `http://127.0.0.1:${keyServicePort}`,
    REDIS_PREFIX: prefix,
    ...(useRedis ? { REDIS_URL: redisUrl } : {}),
    ...extra,
  });
  const router = await startNode("router.ts", TARGET_CPU, { env: routerEnv() }, [
    "--expose-gc",
    ...(PROFILE ? ["--cpu-prof", "--cpu-prof-interval=200", `--cpu-prof-dir=${PROFILE}`] : []),
    ...ROUTER_FLAGS,
  ]);
  const routerNoAudit = await startNode("router.ts", TARGET_CPU, { env: routerEnv({ ROUTER_AUDIT: "off" }) });

  const peerSettings = { hosts: HOSTS, domain: DOMAIN, upstream: upstreamUrl, secret: SECRETS.CONTEXT_SIGNING_SECRET };
  const peers: [string, string][] = [
    ["bare node:http + undici (checks nothing)", "peer-bare-undici.ts"],
    // The floor of a gateway on node:http: its server side and this project's fastest
    // client, nothing checked. A target that needs more than this reaches is out of reach
    // for any gateway built on node:http (as Hono's Node adapter is) on this machine.
    [FLOOR_NAME, "peer-bare-h1.ts"],
    // The floor of Portcullis's design: the above, plus Hono's Node adapter and the
    // signed tenant context every upstream receives. Still nothing checked.
    [DESIGN_FLOOR_NAME, "peer-design-floor.ts"],
    ["fastify + @fastify/reply-from", "peer-fastify.ts"],
    ["http-proxy", "peer-http-proxy.ts"],
    ["hono proxy() helper", "peer-hono-proxy.ts"],
  ];
  const peerProcs = await Promise.all(peers.map(([, file]) => startNode(file, TARGET_CPU, peerSettings)));
  const nginx = await startNginx(upstream.port);
  const haproxy = await startHaproxy(upstream.port);

  const all: HostSet = { prefix: "t", count: HOSTS, domain: DOMAIN };
  const apiKeyHosts: HostSet = { prefix: "", count: 0, domain: API_HOST, headers: { authorization: `Bearer ${key.value.key}` } };

  // Warm a router's cache: every hostname once (memory ← Redis ← key service), 32 at a time.
  const warm = async (port: number) => {
    const names = [...hostNames(HOSTS), API_HOST];
    let next = 0;
    const worker = async () => {
      while (next < names.length) {
        const h = names[next++] as string;
        const r = await request(`http://127.0.0.1:${port}/`, {
          headers: { host: h, ...(h === API_HOST ? apiKeyHosts.headers : {}) },
        });
        await r.body.dump();
        if (r.statusCode !== 200) throw new Error(`warm-up ${h}: ${r.statusCode}`);
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
  };
  await warm(router.port);
  await warm(routerNoAudit.port);

  const template = JSON.stringify(
    (await (
      await request(`http://127.0.0.1:${keyServicePort}/v1/resolve/tenant/${ids[0]}`, {
        headers: { authorization: `Bearer ${SECRETS.KEY_SERVICE_TOKEN}` },
      })
    ).body.json()) as { tenant: unknown },
  );
  // `rateLimits: false`: the same tenants without rate or quota (the limiter is skipped),
  // to show what the shared limiter costs when every tenant is sparse.
  const seed =
    (count: number, rateLimits = true) =>
    async () => {
      const tenant = JSON.parse(template).tenant;
      if (!rateLimits) tenant.limits = { ...tenant.limits, requestsPerSecond: null, burst: null, monthlyRequests: null };
      await router.ask({ type: "clear-audit" });
      await router.ask({ type: "unseed" });
      // In the store too, as the control plane would have written them: a refresh-ahead
      // re-read (from 5 s into an entry's freshness) finds them.
      await router.ask({ type: "seed", count, prefix: "s", domain: DOMAIN, template: JSON.stringify(tenant), persist: true });
    };

  // Before each run of the router: an empty audit stream (its bound is never reached
  // mid-run, so every run pays for appending every event) and a warm cache.
  const fresh = async () => {
    await router.ask({ type: "clear-audit" });
    await warm(router.port);
  };

  const targets: Target[] = [
    { name: "direct upstream", port: direct.port, pid: direct.child.pid, hosts: all, group: "main" },
    {
      name: "Portcullis",
      port: router.port,
      pid: router.child.pid,
      hosts: all,
      before: () => fresh(),
      group: "main",
    },
    ...peers.map(([name], i) => ({
      name,
      port: (peerProcs[i] as NodeProc).port,
      pid: (peerProcs[i] as NodeProc).child.pid,
      hosts: all,
      group: "main" as const,
    })),
    ...(nginx ? [{ name: "nginx map (1 worker)", port: nginx.port, pid: nginx.pid, hosts: all, group: "main" as const }] : []),
    ...(haproxy
      ? [{ name: "haproxy map (1 thread)", port: haproxy.port, pid: haproxy.pid, hosts: all, group: "main" as const }]
      : []),
    {
      name: "Portcullis, API key (warm)",
      port: router.port,
      pid: router.child.pid,
      hosts: apiKeyHosts,
      before: () => fresh(),
      group: "extra",
    },
    {
      name: "Portcullis, audit off",
      port: routerNoAudit.port,
      pid: routerNoAudit.child.pid,
      hosts: all,
      before: () => warm(routerNoAudit.port),
      group: "extra",
    },
    {
      name: "Portcullis, 10 tenants",
      port: router.port,
      pid: router.child.pid,
      hosts: { prefix: "s", count: 10, domain: DOMAIN },
      before: seed(10),
      group: "extra",
    },
    {
      name: `Portcullis, ${P.big.toLocaleString("en")} tenants`,
      port: router.port,
      pid: router.child.pid,
      hosts: { prefix: "s", count: P.big, domain: DOMAIN },
      before: seed(P.big),
      group: "extra",
    },
    {
      name: "Portcullis, 10 tenants, no rate limits",
      port: router.port,
      pid: router.child.pid,
      hosts: { prefix: "s", count: 10, domain: DOMAIN },
      before: seed(10, false),
      group: "extra",
    },
    {
      name: `Portcullis, ${P.big.toLocaleString("en")} tenants, no rate limits`,
      port: router.port,
      pid: router.child.pid,
      hosts: { prefix: "s", count: P.big, domain: DOMAIN },
      before: seed(P.big, false),
      group: "extra",
    },
  ];

  if (ONLY)
    targets.splice(
      0,
      targets.length,
      ...targets.filter((t) => ONLY.some((o) => (o.startsWith("=") ? t.name === o.slice(1) : o !== "" && t.name.includes(o)))),
    );
  // ---- throughput: alternate targets within each repetition -------------------------------
  // First one uncounted pass over every target: each process's JIT tiers, connections
  // and leases settle before any measured run (a target measured first would pay for
  // its own warm-up otherwise).
  for (const t of targets) {
    await t.before?.();
    await load({ port: t.port, connections: CONNECTIONS, hosts: t.hosts, cpu: LOAD_CPU, tmp, seconds: P.warmRound });
  }
  const samples = new Map<string, (LoadResult & { cpuUs: number })[]>();
  for (let rep = 0; rep < P.reps; rep++) {
    // Rotate the order so no target always follows the same one.
    const order = targets.map((_, i) => targets[(i + rep) % targets.length] as Target);
    for (const t of order) {
      const r = await measure(t);
      samples.set(t.name, [...(samples.get(t.name) ?? []), r]);
      log(
        `  ${t.name.padEnd(42)} ${Math.round(r.rps).toString().padStart(7)} rps  p50 ${r.p50ms.toFixed(2)} ms  p99 ${r.p99ms.toFixed(2)} ms  cpu ${r.cpuUs.toFixed(1)} µs/req${r.errors ? `  ERRORS ${r.errors}` : ""}`,
      );
    }
  }
  await router.ask({ type: "unseed" });
  const rows: Row[] = targets.map((t) => {
    const s = samples.get(t.name) as (LoadResult & { cpuUs: number })[];
    return {
      name: t.name,
      rps: median(s.map((r) => r.rps)),
      p50ms: median(s.map((r) => r.p50ms)),
      p99ms: median(s.map((r) => r.p99ms)),
      cpuUs: median(s.map((r) => r.cpuUs).filter((v) => Number.isFinite(v))),
      runs: s.map((r) => Math.round(r.rps)),
      errors: s.reduce((n, r) => n + r.errors, 0),
      group: t.group,
    };
  });
  for (const r of rows) if (r.errors > 0) note(`${r.name}: ${r.errors} non-2xx or socket errors during its runs`);

  // ---- what each stage costs: the router once more under a CPU profile, once under the
  // sampled allocation profiler (bench/stage-costs.ts); not part of the rounds above.
  const stages = await (async () => {
    const t = targets.find((x) => x.name === "Portcullis") as Target;
    const base = { port: t.port, connections: CONNECTIONS, hosts: t.hosts, cpu: LOAD_CPU, tmp };
    await t.before?.();
    await load({ ...base, seconds: P.warmup });
    await router.ask({ type: "cpu-start" });
    const profiled = await load({ ...base, seconds: P.seconds });
    await router.ask({ type: "cpu-stop", file: join(tmp, "stages.cpuprofile") });
    const costs = stageCosts(JSON.parse(readFileSync(join(tmp, "stages.cpuprofile"), "utf8")) as CpuProfile, profiled.requests);
    await t.before?.();
    await router.ask({ type: "alloc-start", survivors: false });
    const sampled = await load({ ...base, seconds: P.seconds });
    await router.ask({ type: "alloc-stop", file: join(tmp, "stages.heapprofile") });
    const bytes = allocatedBytes(JSON.parse(readFileSync(join(tmp, "stages.heapprofile"), "utf8")) as HeapProfile);
    return { costs, bytesPerRequest: bytes / sampled.requests };
  })();
  const portcullisCpu = () => rows.find((r) => r.name === "Portcullis")?.cpuUs ?? Number.NaN;
  for (const line of formatStageCosts(stages.costs, stages.bytesPerRequest, portcullisCpu())) log(`  ${line}`);

  // ---- memory per cached tenant ----------------------------------------------------------------
  await router.ask({ type: "unseed" });
  const before = (await router.ask({ type: "heap" })) as number;
  await router.ask({
    type: "seed",
    count: P.big,
    prefix: "s",
    domain: DOMAIN,
    template: JSON.stringify(JSON.parse(template).tenant),
  });
  const after = (await router.ask({ type: "heap" })) as number;
  const bytesPerTenant = (after - before) / P.big;
  await router.ask({ type: "unseed" });
  // Collect the 100,000 records now: the latency runs next must not pay for them.
  await router.ask({ type: "heap" });

  // ---- added latency at a fixed moderate rate ----------------------------------------------------
  // The bare forwarder runs too, as the reference for what one more Node hop costs at
  // this rate on this machine. Each run starts with `rateWarmup` uncounted seconds at
  // the rate (JIT tiers and the limiter's leases settle, as in a router that has been
  // serving a while).
  const directRate: number[] = [];
  const routerRate: number[] = [];
  const bareRate: number[] = [];
  const floorRate: number[] = [];
  const designRate: number[] = [];
  const bareProc = peerProcs[0] as NodeProc;
  const floorProc = peerProcs[1] as NodeProc;
  const designProc = peerProcs[2] as NodeProc;
  const rateReps = QUICK ? 1 : 2;
  const rateRuns: { target: string; p50ms: number; p99ms: number; errors: number }[] = [];
  for (let rep = 0; rep < rateReps; rep++) {
    for (const [name, port, bucket] of [
      ["direct upstream", direct.port, directRate],
      ["bare forwarder", bareProc.port, bareRate],
      ["node:http floor", floorProc.port, floorRate],
      ["design floor", designProc.port, designRate],
      ["Portcullis", router.port, routerRate],
    ] as const) {
      if (port === router.port) await warm(port);
      const at = port === router.port ? { lookups: await lookups(router), times: await routerTimes(router.opsPort) } : null;
      const r = await fixedRate(children, LOAD_CPU, {
        port,
        hosts: all,
        rate: P.rate,
        seconds: P.rateSeconds,
        warmup: P.rateWarmup,
      });
      if (at !== null) {
        // Where the router's time went during the run (its warm-up seconds included).
        const times = await routerTimes(router.opsPort);
        const share = (n: string) => shareUnderOneMs(at.times, times, n);
        log(
          `  fixed ${P.rate}/s Portcullis: under 1 ms, its own time ${share("router_added")}, the upstream exchange ${share("upstream")}; cache lookups by tier ${JSON.stringify(moved(at.lookups, await lookups(router)))}`,
        );
      }
      bucket.push(r.p99ms);
      rateRuns.push({ target: name, p50ms: r.p50ms, p99ms: r.p99ms, errors: r.errors });
      log(
        `  fixed ${P.rate}/s ${name.padEnd(18)} p50 ${r.p50ms.toFixed(3)} ms  p99 ${r.p99ms.toFixed(3)} ms${r.errors ? `  ERRORS ${r.errors}` : ""}`,
      );
    }
  }
  const directP50 = median(rateRuns.filter((r) => r.target === "direct upstream").map((r) => r.p50ms));
  const routerP50 = median(rateRuns.filter((r) => r.target === "Portcullis").map((r) => r.p50ms));
  const bareP50 = median(rateRuns.filter((r) => r.target === "bare forwarder").map((r) => r.p50ms));
  const floorP50 = median(rateRuns.filter((r) => r.target === "node:http floor").map((r) => r.p50ms));
  const designP50 = median(rateRuns.filter((r) => r.target === "design floor").map((r) => r.p50ms));
  const added = {
    rate: P.rate,
    p50ms: routerP50 - directP50,
    p99ms: median(routerRate) - median(directRate),
    bareP50ms: bareP50 - directP50,
    bareP99ms: median(bareRate) - median(directRate),
    floorP50ms: floorP50 - directP50,
    floorP99ms: median(floorRate) - median(directRate),
    designP50ms: designP50 - directP50,
    designP99ms: median(designRate) - median(directRate),
    warmupSeconds: P.rateWarmup,
    runs: rateRuns,
  };

  const cacheLookups = { router: await lookups(router), routerAuditOff: await lookups(routerNoAudit) };
  log(`  cache lookups past the synchronous memory path: ${JSON.stringify(cacheLookups)}`);

  // ---- single requests: warm, cold through the store, cold through the key service -------------
  async function single(host: string, headers: Record<string, string> = {}): Promise<number> {
    const t = performance.now();
    const r = await request(`http://127.0.0.1:${router.port}/bench`, { headers: { host, ...headers } });
    await r.body.dump();
    const ms = performance.now() - t;
    if (r.statusCode !== 200) throw new Error(`single ${host}: ${r.statusCode}`);
    return ms;
  }
  const cold: Record<string, { p50: number; p99: number; max: number; n: number }> = {};
  const storeLabel = useRedis ? "Redis" : "in-process store";
  async function series(name: string, prep: (i: number) => Promise<void>, host: (i: number) => string, headers = {}) {
    const ms: number[] = [];
    for (let i = 0; i < P.cold; i++) {
      await prep(i);
      ms.push(await single(host(i), headers));
    }
    cold[name] = { ...summarize(ms), n: ms.length };
    log(`  ${name.padEnd(42)} p50 ${cold[name].p50.toFixed(3)} ms  p99 ${cold[name].p99.toFixed(3)} ms`);
  }
  const hostOf = (i: number) => `t${String(i % HOSTS).padStart(4, "0")}.${DOMAIN}`;
  const idOf = (i: number) => ids[i % HOSTS] as string;
  const keyHash = hashApiKey(key.value.key);
  await series("host, warm", async () => {}, hostOf);
  await series(
    `host, cold through ${storeLabel}`,
    (i) =>
      router.ask({ type: "forget", hosts: [hostOf(i)], tenantIds: [idOf(i)], keyHashes: [], fromStore: false }).then(() => {}),
    hostOf,
  );
  await series(
    "host, cold through the key service",
    (i) =>
      router.ask({ type: "forget", hosts: [hostOf(i)], tenantIds: [idOf(i)], keyHashes: [], fromStore: true }).then(() => {}),
    hostOf,
  );
  const keyHeaders = apiKeyHosts.headers as Record<string, string>;
  await series(
    "API key, warm",
    async () => {},
    () => API_HOST,
    keyHeaders,
  );
  await series(
    `API key, cold through ${storeLabel}`,
    () =>
      router
        .ask({ type: "forget", hosts: [], tenantIds: [ids[0] as string], keyHashes: [keyHash], fromStore: false })
        .then(() => {}),
    () => API_HOST,
    keyHeaders,
  );
  await series(
    "API key, cold through the key service",
    () =>
      router
        .ask({ type: "forget", hosts: [], tenantIds: [ids[0] as string], keyHashes: [keyHash], fromStore: true })
        .then(() => {}),
    () => API_HOST,
    keyHeaders,
  );

  // ---- revocation propagation across two routers sharing Redis -----------------------------------
  let revocation: { p50: number; p99: number; max: number; n: number } | null = null;
  if (useRedis) {
    const second = await startNode("router.ts", LOAD_CPU, { env: routerEnv() });
    const times: number[] = [];
    for (let i = 0; i < P.revocations; i++) {
      const k = await cp.tenants.createKey("t0001", { name: `revoke-${i}` });
      if (!k.ok) throw new Error("createKey failed");
      await cp.publisher.flush();
      const headers = { host: API_HOST, authorization: `Bearer ${k.value.key}` };
      const status = async (port: number) => {
        const r = await request(`http://127.0.0.1:${port}/bench`, { headers });
        await r.body.dump();
        return r.statusCode;
      };
      for (const port of [router.port, second.port])
        if ((await status(port)) !== 200) throw new Error("revocation: key not accepted before revoking");
      const t = performance.now();
      const revoke = request(`http://127.0.0.1:${adminPort}/v1/tenants/t0001/keys/${k.value.id}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${SECRETS.ADMIN_TOKEN}` },
      }).then((r) => r.body.dump());
      const until = async (port: number) => {
        for (;;) {
          if ((await status(port)) === 401) return performance.now() - t;
          if (performance.now() - t > 5_000) throw new Error("revocation did not propagate within 5 s");
        }
      };
      const [a, b] = await Promise.all([until(router.port), until(second.port), revoke]);
      times.push(Math.max(a as number, b as number));
    }
    revocation = { ...summarize(times), n: times.length };
    log(`  revocation propagation (2 routers)         p50 ${revocation.p50.toFixed(2)} ms  p99 ${revocation.p99.toFixed(2)} ms`);
  }

  // ---- the audit pipeline: events moved from the stream into the database --------------------------
  // One router at full speed for a few seconds fills the stream; then the control plane's
  // consumer moves it into the database alone, and its rate is set beside the router's.
  let auditIngest: { events: number; seconds: number; perSecond: number; routerPerSecond: number } | null = null;
  if (useRedis && hasStreams(store)) {
    await router.ask({ type: "clear-audit" });
    const fill = await load({ port: router.port, connections: CONNECTIONS, hosts: all, cpu: LOAD_CPU, tmp, seconds: 3 });
    await router.ask({ type: "flush-audit" });
    const events = await store.streamLength(AUDIT_STREAM.key);
    // Written, or counted as invalid and acknowledged: either way taken off the stream.
    const written = async () =>
      ((await cp.metrics.auditWritten.get()).values[0]?.value ?? 0) +
      ((await cp.metrics.auditInvalid.get()).values[0]?.value ?? 0);
    const base = await written();
    const t = performance.now();
    cp.auditConsumer.start();
    while ((await written()) - base < events) {
      if (performance.now() - t > 120_000) throw new Error("audit consumer did not catch up within 120 s");
      await new Promise((r) => setTimeout(r, 20));
    }
    const seconds = (performance.now() - t) / 1000;
    await cp.auditConsumer.stop();
    auditIngest = { events, seconds, perSecond: events / seconds, routerPerSecond: fill.rps };
    log(
      `  audit pipeline: ${events} events into ${db.label} in ${seconds.toFixed(2)} s (${Math.round(auditIngest.perSecond)} events/s; the router appended ${Math.round(fill.rps)}/s)`,
    );
  }

  // ---- noisy neighbour ----------------------------------------------------------------------------
  const noisy = await noisyNeighbour(useRedis ? { REDIS_URL: redisUrl, REDIS_PREFIX: `${prefix}noisy:` } : {});
  if (noisy)
    log(
      `  noisy neighbour: quiet success ${noisy.alone.successPercent.toFixed(2)} % -> ${noisy.flooded.successPercent.toFixed(2)} %, ` +
        `p50 ${noisy.alone.p50ms.toFixed(2)} -> ${noisy.flooded.p50ms.toFixed(2)} ms, p99 ${noisy.alone.p99ms.toFixed(2)} -> ${noisy.flooded.p99ms.toFixed(2)} ms`,
    );

  // ---- report ----------------------------------------------------------------------------------
  const none: Row = {
    name: "",
    rps: Number.NaN,
    p50ms: Number.NaN,
    p99ms: Number.NaN,
    cpuUs: Number.NaN,
    runs: [],
    errors: 0,
    group: "extra",
  };
  const get = (name: string) => rows.find((r) => r.name === name) ?? (ONLY ? none : undefined);
  const directRow = get("direct upstream") as Row;
  const portcullis = get("Portcullis") as Row;
  const big = get(`Portcullis, ${P.big.toLocaleString("en")} tenants`) as Row;
  const small = get("Portcullis, 10 tenants") as Row;
  const bigFree = get(`Portcullis, ${P.big.toLocaleString("en")} tenants, no rate limits`) as Row;
  const smallFree = get("Portcullis, 10 tenants, no rate limits") as Row;
  const ratio = (a: number, b: number) => (b > 0 ? a / b : Number.NaN);
  // Throughput ratios pair the runs of one repetition (taken minutes apart from the
  // next), then take the median: the machine's load drifts between repetitions.
  const paired = (a: Row, b: Row) => median(a.runs.map((x, i) => ratio(x, b.runs[i] ?? Number.NaN)));
  // What the node:http floor reaches against the same peer, in the same repetitions.
  const floorRow = get(FLOOR_NAME);
  const designRow = get(DESIGN_FLOOR_NAME);
  const reaches = (row: Row | undefined, peer: Row) =>
    row ? `${paired(row, peer).toFixed(2)}× (by CPU: ${ratio(peer.cpuUs, row.cpuUs).toFixed(2)}×)` : "–";
  const checks: { target: string; value: string; met: boolean; floor: string; design: string }[] = [];
  // The targets are measured against the floors of the same run, where the machine's
  // noise cancels: Hono on every request and a signature on every forwarded request are
  // the design, so the design floor is what any Portcullis starts from.
  const cpuOver = (a: Row | undefined, b: Row | undefined) => (a && b ? ratio(a.cpuUs, b.cpuUs) : Number.NaN);
  const overDesign = cpuOver(portcullis, designRow);
  checks.push({
    target: "CPU per request ≤ 1.15× the design floor's (every check, audit and metering on)",
    value: `${overDesign.toFixed(2)}× (${portcullis.cpuUs.toFixed(1)} against ${designRow?.cpuUs.toFixed(1) ?? "–"} µs)`,
    met: overDesign <= 1.15,
    floor: `${cpuOver(portcullis, floorRow).toFixed(2)}× its CPU`,
    design: "1.00×",
  });
  checks.push({
    target: `added p99 at ${P.rate} req/s ≤ the design floor's + 1 ms, and ≤ 3 ms`,
    value: `${added.p99ms.toFixed(3)} ms`,
    met: added.p99ms <= added.designP99ms + 1 && added.p99ms <= 3,
    floor: `${added.floorP99ms.toFixed(3)} ms`,
    design: `${added.designP99ms.toFixed(3)} ms`,
  });
  const designOverFloor = cpuOver(designRow, floorRow);
  checks.push({
    target: "design floor: CPU per request ≤ 1.4× the node:http floor's",
    value: `${designOverFloor.toFixed(2)}× (${designRow?.cpuUs.toFixed(1) ?? "–"} against ${floorRow?.cpuUs.toFixed(1) ?? "–"} µs)`,
    met: designOverFloor <= 1.4,
    floor: "1.00×",
    design: `${designOverFloor.toFixed(2)}×`,
  });
  const hono = get("hono proxy() helper");
  if (hono) {
    checks.push({
      target: "throughput ≥ 2× hono proxy() helper",
      value: `${paired(portcullis, hono).toFixed(2)}× (by CPU per request: ${ratio(hono.cpuUs, portcullis.cpuUs).toFixed(2)}×)`,
      met: paired(portcullis, hono) >= 2,
      floor: reaches(floorRow, hono),
      design: reaches(designRow, hono),
    });
  }
  const tenantRatio = paired(big, small);
  checks.push({
    target: `${P.big.toLocaleString("en")} tenants ≥ 0.95× 10 tenants (limits on; over-admission bound: docs/limits.md)`,
    value:
      `${tenantRatio.toFixed(2)}× (by CPU per request: ${ratio(small.cpuUs, big.cpuUs).toFixed(2)}×); ` +
      `without rate limits ${paired(bigFree, smallFree).toFixed(2)}× (by CPU: ${ratio(smallFree.cpuUs, bigFree.cpuUs).toFixed(2)}×)`,
    met: tenantRatio >= 0.95,
    floor: "–",
    design: "–",
  });
  checks.push({
    target: "< 2 KiB per cached tenant",
    value: `${Math.round(bytesPerTenant)} B`,
    met: bytesPerTenant < 2048,
    floor: "–",
    design: "–",
  });

  const result = {
    date: new Date().toISOString(),
    mode: QUICK ? "quick" : ONLY ? "only" : "full",
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? "", node: process.version, pinned: TASKSET },
    method: {
      hostnames: HOSTS,
      connections: CONNECTIONS,
      loadGenerator: LOADGEN,
      repetitions: P.reps,
      secondsPerRun: P.seconds,
      warmupSeconds: P.warmup,
      store: storeLabel,
      controlPlaneDatabase: db.label,
    },
    throughput: rows.map((r) => ({
      ...r,
      vsDirect: ratio(r.rps, directRow.rps),
      vsPortcullis: ratio(r.rps, portcullis.rps),
    })),
    addedLatency: added,
    stageCostsUsPerRequest: Object.fromEntries(stages.costs.perRequest),
    bytesAllocatedPerRequest: Math.round(stages.bytesPerRequest),
    bytesPerCachedTenant: Math.round(bytesPerTenant),
    singleRequests: cold,
    revocationPropagationMs: revocation,
    auditIngest,
    noisyNeighbour: noisy,
    cacheLookups,
    checks,
    notes,
    durationSeconds: Math.round((Date.now() - started) / 1000),
  };

  const f = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : "–");
  const md: string[] = [];
  md.push(`# Portcullis benchmark, ${result.date} (${result.mode})`, "");
  md.push(
    `${HOSTS} hostnames routed on Host to one Node upstream (100-byte body, keep-alive); load by ${LOADGEN}; ` +
      `${P.reps} alternating repetition(s) of ${P.seconds} s per target, medians; the target alone on core 1${TASKSET ? "" : " (not pinned)"}. ` +
      `Portcullis: all checks and audit on, store: ${storeLabel}, control plane on ${db.label}. Compare ratios within this run only.`,
    "",
  );
  md.push(
    "| target | req/s | p50 ms | p99 ms | × direct | × Portcullis | CPU µs/req | runs (req/s) |",
    "|---|---:|---:|---:|---:|---:|---:|---|",
  );
  for (const r of result.throughput)
    md.push(
      `| ${r.name}${r.errors ? ` (${r.errors} errors)` : ""} | ${Math.round(r.rps)} | ${f(r.p50ms)} | ${f(r.p99ms)} | ${f(r.vsDirect)} | ${f(r.vsPortcullis)} | ${f(r.cpuUs, 1)} | ${r.runs.join(", ")} |`,
    );
  md.push(
    "",
    `Added latency at a fixed ${P.rate} req/s (open loop, ${P.rateSeconds} s after ${P.rateWarmup} s uncounted, median of ${rateReps}): Portcullis p50 ${f(added.p50ms, 3)} ms, p99 ${f(added.p99ms, 3)} ms; for reference the bare forwarder p50 ${f(added.bareP50ms, 3)} ms, p99 ${f(added.bareP99ms, 3)} ms, the node:http floor p50 ${f(added.floorP50ms, 3)} ms, p99 ${f(added.floorP99ms, 3)} ms, and the design floor p50 ${f(added.designP50ms, 3)} ms, p99 ${f(added.designP99ms, 3)} ms (each minus direct).`,
    "",
  );
  md.push(
    `What each stage of Portcullis's request path costs (a profiled extra run after the rounds; each CPU sample counted at the innermost known part of its stack, 100 µs sampling; each share applied to the CPU per request measured in the rounds): µs of CPU per request, beside the floors' whole cost per request in the rounds (${FLOOR_NAME}: ${f(rows.find((r) => r.name === FLOOR_NAME)?.cpuUs ?? Number.NaN, 1)}, ${DESIGN_FLOOR_NAME}: ${f(rows.find((r) => r.name === DESIGN_FLOOR_NAME)?.cpuUs ?? Number.NaN, 1)}).`,
    "",
    ...stageTable(stages.costs, stages.bytesPerRequest, portcullisCpu()),
    "",
  );
  md.push(
    `Memory per cached tenant (host entry + tenant record, ${P.big.toLocaleString("en")} seeded, heap after GC): ${Math.round(bytesPerTenant)} bytes.`,
    "",
  );
  md.push("| single request (sequential, one connection) | n | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|");
  for (const [name, c] of Object.entries(cold))
    md.push(`| ${name} | ${c.n} | ${f(c.p50, 3)} | ${f(c.p99, 3)} | ${f(c.max, 3)} |`);
  md.push("");
  md.push(
    revocation
      ? `Revocation propagation (admin API DELETE until both routers answer 401, ${revocation.n} keys): p50 ${f(revocation.p50)} ms, p99 ${f(revocation.p99)} ms, max ${f(revocation.max)} ms.`
      : "Revocation propagation: not measured (needs Redis).",
    "",
  );
  md.push(
    auditIngest
      ? `Audit pipeline (the control plane's consumer alone, stream → ${db.label}, after one router appended for 3 s): ${auditIngest.events} events in ${f(auditIngest.seconds)} s, ${Math.round(auditIngest.perSecond)} events/s; the router appended ${Math.round(auditIngest.routerPerSecond)} events/s. The consumer is off during the other runs: it is the control plane's work, and here it would share the two cores with Portcullis's runs only.`
      : "Audit pipeline: not measured (needs Redis).",
    "",
  );
  if (noisy) {
    const n = noisy.settings;
    md.push(
      `Noisy neighbour (bench/noisy-neighbour.ts; ${noisy.store} store, ${noisy.database}; ${n.rounds} alternating rounds of ${n.seconds} s per phase, medians): ` +
        `a quiet tenant at ${n.quietRps} req/s, alone and while a neighbour limited to ${n.noisyLimit} req/s floods at ${n.floodRps} req/s.`,
      "",
      "| quiet tenant | success | p50 ms | p99 ms |",
      "|---|---:|---:|---:|",
      `| alone | ${f(noisy.alone.successPercent)} % | ${f(noisy.alone.p50ms)} | ${f(noisy.alone.p99ms)} |`,
      `| with the neighbour flooding | ${f(noisy.flooded.successPercent)} % | ${f(noisy.flooded.p50ms)} | ${f(noisy.flooded.p99ms)} |`,
      "",
    );
  } else md.push("Noisy neighbour: not measured (see notes).", "");
  md.push(
    "Targets, each against the floors of this run: CPU per request is the target's own CPU time over the requests it served (steadier than req/s on a busy machine); throughput ratios are medians of per-repetition ratios. The peers' other ratios (fastify, http-proxy, the bare forwarder, nginx, haproxy) are in the table above, for reference, not as targets.",
    "",
    `The last two columns are what the two floors reach on the same measure in the same run. The node:http floor (${FLOOR_NAME}): where it is below the target, no gateway on node:http reaches that target here. The design floor (${DESIGN_FLOOR_NAME}): where it is below the target, no gateway built as Portcullis must be (Hono on its Node adapter, every forwarded request signed) reaches it here, whatever it checks.`,
    "",
    "| target | reached | met | node:http floor reaches | design floor reaches |",
    "|---|---|---|---|---|",
  );
  for (const c of checks) md.push(`| ${c.target} | ${c.value} | ${c.met ? "yes" : "**no**"} | ${c.floor} | ${c.design} |`);
  if (notes.length > 0) md.push("", "Notes:", ...notes.map((n) => `- ${n}`));
  md.push("", `Run took ${result.durationSeconds} s.`);
  const text = md.join("\n");

  const outDir = join(here, "results");
  mkdirSync(outDir, { recursive: true });
  const stamp = result.date.replace(/[:]/g, "-").replace(/\..*$/, "");
  writeFileSync(join(outDir, `${stamp}-${result.mode}.json`), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(outDir, `${stamp}-${result.mode}.md`), `${text}\n`);
  process.stdout.write(`\n${text}\n\nwritten: bench/results/${stamp}-${result.mode}.{json,md}\n`);

  // ---- clean up ----------------------------------------------------------------------------------
  keyServer.closeAllConnections();
  adminServer.closeAllConnections();
  keyServer.close();
  adminServer.close();
  await cp.close();
  await store.close();
  await db.drop();
  if (useRedis) await dropRedisPrefix(redisUrl, prefix);
}

interface NoisyFigures {
  successPercent: number;
  p50ms: number;
  p99ms: number;
}
interface NoisyResult {
  store: string;
  database: string;
  settings: { seconds: number; rounds: number; quietRps: number; noisyLimit: number; floodRps: number };
  alone: NoisyFigures;
  flooded: NoisyFigures;
}

/**
 * Runs bench/noisy-neighbour.ts as its own process (its own stack on PGlite, and the
 * Redis when given) on both cores, and reads its result file; null (with a note) if
 * it fails or runs past its bound.
 */
async function noisyNeighbour(extraEnv: Record<string, string>): Promise<NoisyResult | null> {
  const file = join(tmp, "noisy-neighbour.json");
  const env: Record<string, string | undefined> = {
    ...process.env,
    ...extraEnv,
    BENCH_SECONDS: QUICK ? "2" : "3",
    BENCH_ROUNDS: QUICK ? "2" : "3",
    NOISY_RESULT_FILE: file,
  };
  // Its control plane stays embedded: never migrate into a database named in the environment.
  delete env.DATABASE_URL;
  if (!extraEnv.REDIS_URL) delete env.REDIS_URL;
  log(`bench: noisy neighbour (${env.BENCH_ROUNDS} rounds of ${env.BENCH_SECONDS} s per phase)...`);
  const [cmd, args] = pinned(TASKSET ? "0,1" : null, process.execPath, [join(here, "noisy-neighbour.ts")]);
  // Its own table goes to stderr with the other progress lines; the figures come from the file.
  const child = spawn(cmd, args, { stdio: ["ignore", 2, 2], env });
  children.push(child);
  const bound = setTimeout(() => child.kill("SIGTERM"), 180_000);
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  clearTimeout(bound);
  try {
    if (code !== 0) throw new Error(`exited with ${code}`);
    return JSON.parse(readFileSync(file, "utf8")) as NoisyResult;
  } catch (error) {
    note(`noisy neighbour not measured: ${(error as Error).message}`);
    return null;
  }
}

function stopChildren() {
  for (const c of children) if (c.exitCode === null && c.pid !== undefined) c.kill("SIGTERM");
  rmSync(tmp, { recursive: true, force: true });
}

try {
  await main();
  stopChildren();
  process.exit(0);
} catch (error) {
  log(`bench failed: ${(error as Error).stack ?? error}`);
  stopChildren();
  process.exit(1);
}
