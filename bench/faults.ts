/**
 * `npm run faults`: partial failure, measured. One bounded run (under 5 minutes) that
 * starts its own stack as separate OS processes, as in production (bench/faults/stack.ts):
 * two routers (`node router/src/main.ts`, two ports), the control plane, the key
 * service, its own redis-server, and a throw-away Postgres database reached through a
 * TCP relay the harness can cut or black-hole; the tenants' apps are echo servers in
 * this process (bench/faults/upstream.ts), one tenant with two of them behind its two
 * upstream URLs. It creates tenants and keys through the admin API, drives steady
 * open-loop traffic at both routers (bench/faults/load.ts, a process of its own),
 * checks every answer (bench/faults/check.ts), injects one fault at a time and writes
 * one row per scenario (bench/faults/report.ts) to bench/results/<time>-faults.md and
 * into docs/operations.md. Exit 0 when every target is met, 1 otherwise.
 *
 *   npm run faults                 # the full run (Postgres down for 60 s)
 *   npm run faults -- --quick      # Postgres down for 16 s, for development
 *   npm run faults -- --rate 400   # requests per second over both routers (default 300)
 *   npm run faults -- --only redis-kill,postgres   # some scenarios only (no docs/operations.md update)
 *
 * Postgres: FAULTS_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres),
 * where the throw-away database is created and, at the end, dropped.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { Pool } from "undici";
import { CACHE, hashApiKey } from "@portcullis/shared";
import {
  classify,
  type Expected,
  fmtMs,
  type Latency,
  latency,
  percentile,
  type Sample,
  tally,
  tallyText,
} from "./faults/check.ts";
import type { Lane, LoadSettings } from "./faults/load.ts";
import { type Check, checksText, passed, type ScenarioResult, table, updateFaultsSection } from "./faults/report.ts";
import {
  allocatePorts,
  newSecrets,
  type ProcessEvent,
  RedisServer,
  ROOT,
  rssMiB,
  Service,
  TcpProxy,
  ThrowawayDatabase,
} from "./faults/stack.ts";
import { EchoApp } from "./faults/upstream.ts";

const began = Date.now();
const argv = process.argv.slice(2);
const option = (name: string, fallback: string) => {
  const i = argv.indexOf(name);
  return i === -1 ? fallback : (argv[i + 1] ?? fallback);
};
const QUICK = argv.includes("--quick");
const RATE = Number(option("--rate", "300"));
const ONLY = option("--only", "")
  .split(",")
  .filter((s) => s !== "");
const PG_OUTAGE_MS = QUICK ? 16_000 : 60_000;
const DOMAIN = "faults.test";
const API_HOST = `api.${DOMAIN}`;
const KEY_SERVICE_TIMEOUT_MS = 2_000;
/** What an uncached key's 503 may take beyond KEY_SERVICE_TIMEOUT_MS (the Redis miss before it, loopback, event loops). */
const KEY_SERVICE_SLACK_MS = 250;
const UPSTREAM_HEADERS_TIMEOUT_MS = 5_000;
/** Routers' drain bound (default 25 s): shorter so that a drain that does not end on its own fits the run. */
const DRAIN_TIMEOUT_MS = 10_000;
const CLIENT_TIMEOUT_MS = 15_000;
const BEFORE_MS = 2_000;
/** Growth of one process's RSS over one scenario beyond which memory does not count as bounded. */
const RSS_GROWTH_LIMIT_MIB = 100;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const log = (line: string) => console.log(`[faults ${((Date.now() - began) / 1000).toFixed(1).padStart(6)} s] ${line}`);

// ---------------------------------------------------------------------------------------------
// The stack

const logDir = mkdtempSync(join(tmpdir(), "pc-faults-"));
const events: ProcessEvent[] = [];
const secrets = newSecrets();
const prefix = `pc-faults-${Math.random().toString(36).slice(2, 10)}:`;
const db = new ThrowawayDatabase(process.env.FAULTS_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres");
const pgProxy = new TcpProxy("127.0.0.1", Number(new URL(db.url()).port || 5432));
let redis: RedisServer | null = null;
const services: Service[] = [];
const apps: EchoApp[] = [];
let upProxy: TcpProxy | null = null;
let loadChild: ChildProcess | null = null;
const routerPools: Pool[] = [];

let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    loadChild?.kill("SIGKILL");
    redis?.resume();
    await Promise.all(services.map((s) => s.shutdown().catch(() => {})));
    await Promise.all(routerPools.map((p) => p.destroy().catch(() => {})));
    await redis?.stop().catch(() => {});
    await upProxy?.close().catch(() => {});
    await pgProxy.close().catch(() => {});
    await Promise.all(apps.map((a) => a.close().catch(() => {})));
    await db.drop().catch((e) => console.error(`faults: could not drop database ${db.name}: ${e}`));
  })();
  return cleaning;
}
process.on("exit", () => {
  for (const s of services) s.killNow();
  loadChild?.kill("SIGKILL");
  if (redis?.pid !== undefined)
    try {
      process.kill(redis.pid, "SIGCONT");
      process.kill(redis.pid, "SIGKILL");
    } catch {}
});
process.on("uncaughtException", (error) => {
  console.error(`faults: harness failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  console.error(`service logs: ${logDir}`);
  void cleanup().finally(() => process.exit(1));
});
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.once(signal, () => {
    console.error(`\nfaults: ${signal}, cleaning up (logs kept in ${logDir})`);
    void cleanup().finally(() => process.exit(130));
  });

log(`logs in ${logDir}`);
redis = await RedisServer.start();
log(`redis-server on :${redis.port}`);
await db.create(logDir);
await pgProxy.start();
log(`database ${db.name} migrated; services reach it through a relay on :${pgProxy.port}`);

const ports = await allocatePorts(2);
const common: Record<string, string> = {
  PATH: process.env.PATH ?? "",
  NODE_ENV: "production",
  ...secrets,
  REDIS_URL: redis.url,
  REDIS_PREFIX: prefix,
  DATABASE_URL: db.url(pgProxy.port),
  PLATFORM_DOMAIN: DOMAIN,
  LOG_LEVEL: "warn",
  ADMIN_PORT: String(ports.admin),
  CONTROL_PLANE_OPS_PORT: String(ports.adminOps),
  KEY_SERVICE_PORT: String(ports.keyService),
  KEY_SERVICE_OPS_PORT: String(ports.keyServiceOps),
  KEY_SERVICE_URL: `http://127.0.0.1:${ports.keyService}`,
};
const controlPlane = new Service("cp", "control-plane/src/main.ts", common, /control plane admin API on :\d+/, logDir, events);
const keyService = new Service("ks", "control-plane/src/key-service/main.ts", common, /key service on :\d+/, logDir, events);
const routers = ports.routers.map(
  (p, i) =>
    new Service(
      `router-${"ab"[i]}`,
      "router/src/main.ts",
      {
        ...common,
        ROUTER_PORT: String(p.port),
        ROUTER_OPS_PORT: String(p.opsPort),
        ROUTER_HOST: "127.0.0.1",
        KEY_SERVICE_TIMEOUT_MS: String(KEY_SERVICE_TIMEOUT_MS),
        UPSTREAM_HEADERS_TIMEOUT_MS: String(UPSTREAM_HEADERS_TIMEOUT_MS),
        DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
      },
      /router listening on :\d+/,
      logDir,
      events,
    ),
);
services.push(controlPlane, keyService, ...routers);
await Promise.all([controlPlane.start(), keyService.start()]);
await Promise.all(routers.map((r) => r.start()));
for (const p of ports.routers) routerPools.push(new Pool(`http://127.0.0.1:${p.port}`, { connections: 128 }));
log(
  `routers on :${ports.routers.map((p) => p.port).join(" and :")}, admin API on :${ports.admin}, key service on :${ports.keyService}`,
);

// ---------------------------------------------------------------------------------------------
// Admin API and probes

interface AdminAnswer {
  status: number;
  body: unknown;
  ms: number;
  error?: string;
}

async function admin(method: string, path: string, body?: unknown, timeoutMs = 10_000): Promise<AdminAnswer> {
  const started = performance.now();
  try {
    const res = await fetch(`http://127.0.0.1:${ports.admin}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${secrets.ADMIN_TOKEN}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text === "" ? null : JSON.parse(text);
    } catch {}
    return { status: res.status, body: parsed, ms: performance.now() - started };
  } catch (error) {
    const e = error as { name?: string; message?: string };
    return {
      status: 0,
      body: null,
      ms: performance.now() - started,
      error: e.name === "TimeoutError" ? `no answer in ${timeoutMs} ms` : (e.message ?? String(error)),
    };
  }
}

async function must(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const a = await admin(method, path, body);
  if (a.status < 200 || a.status >= 300) throw new Error(`${method} ${path}: ${a.status} ${a.error ?? JSON.stringify(a.body)}`);
  return (a.body ?? {}) as Record<string, unknown>;
}

/** A 503 with the refusal JSON body (docs/errors.md). */
function isJson503(a: AdminAnswer): boolean {
  const e = (a.body as { error?: { code?: unknown; message?: unknown; requestId?: unknown } } | null)?.error;
  return a.status === 503 && typeof e?.code === "string" && typeof e.message === "string" && typeof e.requestId === "string";
}

const describe = (a: AdminAnswer) =>
  a.error
    ? `${a.error} (${fmtMs(a.ms)} ms)`
    : `${a.status} ${(a.body as { error?: { code?: string } } | null)?.error?.code ?? ""} in ${fmtMs(a.ms)} ms`.replace(
        "  ",
        " ",
      );

/** Probes sent by the harness itself (revocations, new tenants, uncached keys): checked like the load's. */
const probes: Sample[] = [];

async function probe(router: number, lane: string, host: string, expected: Expected, key?: string): Promise<Sample> {
  const t = Date.now();
  const started = performance.now();
  const headers: Record<string, string> = { host };
  if (key) headers.authorization = `Bearer ${key}`;
  let sample: Sample;
  try {
    const res = await (routerPools[router] as Pool).request({
      method: "GET",
      path: `/faults/${lane.replace(/[^A-Za-z0-9-]/g, "-")}`,
      headers,
      headersTimeout: CLIENT_TIMEOUT_MS,
      bodyTimeout: CLIENT_TIMEOUT_MS,
    });
    const body = await res.body.text();
    sample = {
      seq: -1,
      lane,
      router,
      t,
      ms: performance.now() - started,
      status: res.statusCode,
      delay: 0,
      ...classify(expected, res.statusCode, body, res.headers),
    };
  } catch (error) {
    const e = error as { code?: string; message?: string };
    sample = {
      seq: -1,
      lane,
      router,
      t,
      ms: performance.now() - started,
      status: 0,
      delay: 0,
      cls: "error",
      code: e.code ?? e.message ?? "error",
      rid: "",
      app: "",
    };
  }
  probes.push(sample);
  return sample;
}

// ---------------------------------------------------------------------------------------------
// Tenants

interface TenantInfo extends Expected {
  host: string;
  app: EchoApp;
}

async function startApp(name: string): Promise<EchoApp> {
  const app = await new EchoApp(name, secrets.CONTEXT_SIGNING_SECRET).start();
  apps.push(app);
  return app;
}

async function createTenant(slug: string, urls: string[], app: EchoApp): Promise<TenantInfo> {
  const created = await must("POST", "/v1/tenants", { slug, name: `Faults ${slug}`, plan: "enterprise" });
  await must("PUT", `/v1/tenants/${slug}/database`, { server: `pg-${slug}.internal:5432`, database: slug });
  await must("PUT", `/v1/tenants/${slug}/upstreams`, { urls });
  return { tenantId: String(created.id), slug, host: `${slug}.${DOMAIN}`, app };
}

async function createKey(slug: string, name: string): Promise<{ id: string; key: string }> {
  const k = await must("POST", `/v1/tenants/${slug}/keys`, { name });
  return { id: String(k.id), key: String(k.key) };
}

const tenants: Record<string, TenantInfo> = {};
for (const slug of ["alpha", "bravo", "charlie", "delta"]) {
  const app = await startApp(`${slug}-app`);
  tenants[slug] = await createTenant(slug, [app.url], app);
}
const multiA = await startApp("multi-a");
const multiB = await startApp("multi-b");
upProxy = await new TcpProxy("127.0.0.1", multiA.port).start();
tenants.multi = await createTenant("multi", [`http://127.0.0.1:${upProxy.port}`, multiB.url], multiA);
const coldApp = await startApp("cold-app");
for (const slug of ["cold1", "cold2"]) tenants[slug] = await createTenant(slug, [coldApp.url], coldApp);
const charlieB = await startApp("charlie-app-b");
const lateApp = await startApp("late-app");

const t = (slug: string) => tenants[slug] as TenantInfo;
const warmKeys = [
  { slug: "alpha", ...(await createKey("alpha", "warm-1")) },
  { slug: "alpha", ...(await createKey("alpha", "warm-2")) },
  { slug: "bravo", ...(await createKey("bravo", "warm-1")) },
  { slug: "bravo", ...(await createKey("bravo", "warm-2")) },
];
const uncachedKeys: { id: string; key: string }[] = [];
for (let i = 0; i < 16; i++) uncachedKeys.push(await createKey("charlie", `uncached-${i}`));
const revocable: { id: string; key: string }[] = [];
for (let i = 0; i < 20; i++) revocable.push(await createKey("delta", `revocable-${i}`));
log(`${Object.keys(tenants).length} tenants, ${warmKeys.length + uncachedKeys.length + revocable.length} API keys created`);

// ---------------------------------------------------------------------------------------------
// Load

const lanes: Lane[] = [
  ...["alpha", "bravo", "charlie", "delta", "multi"].map((slug) => ({
    name: `host:${slug}`,
    host: t(slug).host,
    expected: { tenantId: t(slug).tenantId, slug },
    weight: 4,
  })),
  ...warmKeys.map((k, i) => ({
    name: `key:${k.slug}#${i}`,
    host: API_HOST,
    authorization: `Bearer ${k.key}`,
    expected: { tenantId: t(k.slug).tenantId, slug: k.slug },
    weight: 1,
  })),
];
const samples: Sample[] = [];
/** What the load process last said: when it said it, and the send time of its oldest unanswered request. */
let loadReport = { at: 0, oldest: null as number | null };
const settings: LoadSettings = {
  routers: ports.routers.map((p) => p.port),
  lanes,
  rate: RATE,
  timeoutMs: CLIENT_TIMEOUT_MS,
};
const load = spawn(process.execPath, [join(import.meta.dirname, "faults", "load.ts"), JSON.stringify(settings)], {
  cwd: ROOT,
  stdio: ["ignore", "inherit", "inherit", "ipc"],
});
loadChild = load;
let loadDone: () => void = () => {};
const loadFinished = new Promise<void>((r) => (loadDone = r));
await new Promise<void>((resolve, reject) => {
  load.once("exit", (code) => reject(new Error(`load process exited (${code})`)));
  load.on("message", (m: { type: string; samples?: Sample[]; oldest?: number | null; last?: boolean }) => {
    if (m.type === "ready") resolve();
    else if (m.type === "samples") {
      for (const s of m.samples ?? []) samples.push(s);
      loadReport = { at: Date.now(), oldest: m.oldest ?? null };
      if (m.last) loadDone();
    }
  });
});
const loadCommand = (m: Record<string, unknown>) => load.send(m);

const loadStart = Date.now();
const warmupMs = QUICK ? 6_000 : 10_000;
log(`load: ${RATE} req/s over ${lanes.length} lanes and both routers; ${warmupMs / 1000} s of warm-up`);
// Every revocable key used once on each router: cached there before it is revoked.
for (const k of revocable) for (const r of [0, 1]) await probe(r, "warm-revocable", API_HOST, t("delta"), k.key);
await sleep(loadStart + warmupMs - Date.now());
const warm = samples.filter((s) => s.t >= Date.now() - 4_000 && s.delay === 0);
const baseline = latency(warm);
log(
  `baseline (last 4 s of warm-up, ${warm.length} requests): p50 ${fmtMs(baseline.p50)}, p95 ${fmtMs(baseline.p95)}, p99 ${fmtMs(baseline.p99)} ms`,
);

/**
 * What "normal" latency is for a scenario: p90 of a 250 ms slice ≤ 2× the p99 of the
 * quieter of the warm-up and the 2 s before the fault (at least that p99 + 10 ms).
 */
function normalThreshold(start: number): number {
  const before = latency(between(samples, start - BEFORE_MS, start).filter((s) => s.delay === 0));
  const ref = Math.min(baseline.p99, Number.isFinite(before.p99) ? before.p99 : baseline.p99);
  return Math.max(2 * ref, ref + 10);
}

// ---------------------------------------------------------------------------------------------
// Measuring a scenario

interface Window {
  /** The fault was injected. */
  start: number;
  /** The fault was removed (the dependency is back). */
  removed: number;
  /** The scenario's last moment. */
  end: number;
}

const between = (list: Sample[], from: number, to: number) => list.filter((s) => s.t >= from && s.t < to);

/**
 * From the fault's removal: the start of the first 2 s in which every 250 ms slice of
 * warm traffic is all correct 2xx with p90 ≤ the normal threshold. Null: not within the window.
 */
function recoveryAfter(from: number, to: number, threshold: number): number | null {
  const BUCKET = 250;
  const STABLE = 8;
  const list = between(samples, from, to).filter((s) => s.delay === 0);
  const n = Math.floor((to - from) / BUCKET);
  const normal: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const b = list.filter((s) => s.t >= from + i * BUCKET && s.t < from + (i + 1) * BUCKET);
    normal.push(
      b.length > 0 &&
        b.every((s) => s.cls === "ok") &&
        percentile(
          b.map((s) => s.ms),
          90,
        ) <= threshold,
    );
  }
  for (let i = 0; i + STABLE <= n; i++) if (normal.slice(i, i + STABLE).every(Boolean)) return i * BUCKET;
  return null;
}

interface Rss {
  mib: number;
  pid: number | undefined;
}

/** The first RSS seen of each process (a fresh process's size), for those restarted within a scenario. */
const firstRss = new Map<string, number>();

function rssSnapshot(): Map<string, Rss> {
  const m = new Map<string, Rss>();
  for (const s of services) m.set(s.name, { mib: s.rss(), pid: s.pid });
  m.set("redis", { mib: rssMiB(redis?.pid), pid: redis?.pid });
  for (const [k, v] of m) if (!firstRss.has(k) && Number.isFinite(v.mib)) firstRss.set(k, v.mib);
  return m;
}

/** Non-ok answers by kind, with their lanes and when they were sent (relative to `start`). */
function describeFailures(list: Sample[], start: number): string {
  const groups = new Map<string, Sample[]>();
  for (const s of list) {
    if (s.cls === "ok") continue;
    const key = `${s.cls} ${s.status || ""} ${s.code}`.replace(/\s+/g, " ").trim();
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  const rel = (t: number) => `${t >= start ? "+" : ""}${((t - start) / 1000).toFixed(1)} s`;
  return [...groups.entries()]
    .sort((a, b) => b[1].length - a[1].length)
    .map(([k, g]) => {
      const lanes = new Map<string, number>();
      for (const s of g) lanes.set(s.lane, (lanes.get(s.lane) ?? 0) + 1);
      const ts = g.map((s) => s.t);
      return `${k} ×${g.length} (${[...lanes.entries()].map(([l, n]) => `${l} ${n}`).join(", ")}; sent ${rel(Math.min(...ts))} … ${rel(Math.max(...ts))})`;
    })
    .join("; ");
}

const results: ScenarioResult[] = [];
/** Each row checks every answer to what was sent since the row before ended: no request goes unchecked. */
let lastScenarioEnd = loadStart;

interface Outcome {
  window: Window;
  checks: Check[];
  notes: string[];
  auditLost?: number | null;
  /** Load samples not counted as non-contract (the SIGTERM'd router's refused connections after the signal). */
  excused?: (s: Sample) => boolean;
  /** Recovery target in ms (checked), or undefined to report it only. */
  recoveryTargetMs?: number;
  /** Do not measure recovery. */
  noRecovery?: boolean;
}

async function scenario(name: string, fault: string, run: () => Promise<Outcome>): Promise<void> {
  if (ONLY.length > 0 && !ONLY.includes(name) && name !== "baseline") return;
  log(`── ${name}: ${fault}`);
  const rssBefore = rssSnapshot();
  const startedAt = Date.now();
  let outcome: Outcome;
  let error: string | undefined;
  try {
    outcome = await run();
  } catch (e) {
    error = e instanceof Error ? (e.stack ?? e.message) : String(e);
    log(`${name}: harness error: ${error}`);
    outcome = { window: { start: startedAt, removed: Date.now(), end: Date.now() }, checks: [], notes: [] };
  }
  await restoreEverything();
  // Answers to requests sent in the window arrive within the client timeout; the load
  // process reports every 200 ms.
  await waitForAnswers(outcome.window.end);
  const { start, removed, end } = outcome.window;
  const rssAfter = rssSnapshot();
  const covered = Math.min(lastScenarioEnd, start);
  const mine = between(samples, covered, end);
  const myProbes = between(probes, covered, end);
  const all = [...mine, ...myProbes];
  const excused = outcome.excused ?? (() => false);
  const wrong = all.filter((s) => s.cls === "wrong").length;
  const nonContract = all.filter((s) => (s.cls === "bad" || s.cls === "error") && !excused(s)).length;
  const during = latency(between(samples, start, removed).filter((s) => s.delay === 0));
  const after = latency(between(samples, removed, end).filter((s) => s.delay === 0));
  const threshold = normalThreshold(start);
  const recoveryMs = outcome.noRecovery ? undefined : recoveryAfter(removed, end, threshold);
  const evs = events.filter((e) => e.t >= covered && e.t < Date.now());
  lastScenarioEnd = end;
  const crashes = evs.filter((e) => e.kind === "crash").length;
  const unhandled = evs.filter(
    (e) => e.kind === "unhandledRejection" || e.kind === "uncaughtException" || e.kind === "fatal",
  ).length;
  const rss = [...rssAfter.keys()].map((k) => {
    const b = rssBefore.get(k);
    const a = rssAfter.get(k);
    const restarted = b?.pid !== a?.pid;
    return {
      name: restarted ? `${k} (restarted)` : k,
      before: b?.mib ?? Number.NaN,
      after: a?.mib ?? Number.NaN,
      // A process started again within the scenario is compared with a fresh one's size.
      base: restarted ? Math.max(b?.mib ?? 0, firstRss.get(k) ?? 0) : (b?.mib ?? Number.NaN),
    };
  });
  const grown = rss.filter(
    (p) => !(p.after - p.base <= RSS_GROWTH_LIMIT_MIB) && Number.isFinite(p.after) && Number.isFinite(p.base),
  );
  const gone = rss.filter((p) => !Number.isFinite(p.after));
  const recoveryWindowMs = end - removed;
  const checks: Check[] = [
    { name: "wrong-tenant answers", ok: wrong === 0, detail: String(wrong) },
    {
      name: "non-contract answers",
      ok: nonContract === 0,
      detail:
        nonContract === 0
          ? "0"
          : `${nonContract}: ${tallyText(tally(all, (s) => (s.cls === "bad" || s.cls === "error") && !excused(s)))}`,
    },
    {
      name: "process crashes / unhandled rejections",
      ok: crashes === 0 && unhandled === 0,
      detail:
        evs.filter((e) => e.kind !== "warning").length === 0
          ? "0 / 0"
          : evs
              .filter((e) => e.kind !== "warning")
              .map((e) => `${e.service} ${e.kind}: ${e.text}`)
              .join("; "),
    },
    {
      name: `memory bounded (each process grows ≤ ${RSS_GROWTH_LIMIT_MIB} MiB, all still running)`,
      ok: grown.length === 0 && gone.length === 0,
      detail:
        grown.length + gone.length === 0
          ? "yes"
          : [
              ...grown.map((p) => `${p.name} ${p.before.toFixed(0)}→${p.after.toFixed(0)} MiB`),
              ...gone.map((p) => `${p.name} not running`),
            ].join(", "),
    },
    ...outcome.checks,
  ];
  if (outcome.recoveryTargetMs !== undefined)
    checks.push({
      name: `recovery ≤ ${outcome.recoveryTargetMs / 1000} s after the fault is removed`,
      ok: recoveryMs !== null && recoveryMs !== undefined && recoveryMs <= outcome.recoveryTargetMs,
      detail:
        recoveryMs === null || recoveryMs === undefined
          ? `not within ${(recoveryWindowMs / 1000).toFixed(0)} s`
          : `${(recoveryMs / 1000).toFixed(2)} s`,
    });
  const notes = [...outcome.notes];
  if (!outcome.noRecovery) notes.push(`normal latency for recovery: p90 ≤ ${fmtMs(threshold)} ms per 250 ms`);
  if (mine.some((s) => s.cls !== "ok"))
    notes.push(`load answers other than a correct 2xx (sent relative to the fault): ${describeFailures(mine, start)}`);
  const warnings = evs.filter((e) => e.kind === "warning");
  if (warnings.length > 0) notes.push(`process warnings: ${warnings.map((e) => `${e.service}: ${e.text}`).join("; ")}`);
  const result: ScenarioResult = {
    name,
    fault,
    sent: mine.length,
    wrong,
    nonContract,
    during,
    after,
    recoveryMs,
    recoveryWindowMs,
    auditLost: outcome.auditLost ?? null,
    crashes,
    unhandled,
    rss,
    checks,
    notes,
    ...(error ? { error } : {}),
  };
  results.push(result);
  log(
    `${name}: ${passed(result) ? "PASS" : "FAIL"} — sent ${mine.length}, wrong ${wrong}, non-contract ${nonContract}, ` +
      `during p95 ${fmtMs(during.p95)} ms, after p95 ${fmtMs(after.p95)} ms, recovery ${recoveryMs === undefined ? "–" : recoveryMs === null ? "none" : `${(recoveryMs / 1000).toFixed(2)} s`}` +
      checks
        .filter((c) => !c.ok)
        .map((c) => `\n      FAIL ${c.name}: ${c.detail}`)
        .join(""),
  );
}

/** Until every request the load process sent before `end` is answered (or timed out) and reported. */
async function waitForAnswers(end: number): Promise<void> {
  const deadline = Date.now() + CLIENT_TIMEOUT_MS + 2_000;
  while (Date.now() < deadline) {
    if (loadReport.at > end + 300 && (loadReport.oldest === null || loadReport.oldest >= end)) return;
    await sleep(100);
  }
}

/** After each scenario, whatever happened: every dependency is back. */
async function restoreEverything(): Promise<void> {
  redis?.resume();
  if (redis && !(await redis.ping())) await redis.restart().catch(() => {});
  if (upProxy) {
    upProxy.heal();
    if (!upProxy.listening) await upProxy.start(upProxy.port);
  }
  multiA.delayMs = 0;
  pgProxy.heal();
  if (!pgProxy.listening) await pgProxy.start(pgProxy.port);
  for (const s of services) {
    s.resume();
    if (!s.running) await s.start().catch((e) => log(`could not restart ${s.name}: ${e}`));
  }
  loadCommand({ type: "delay", ms: 0, every: 0 });
  for (const a of apps) a.track = false;
}

const ok = (c: boolean, name: string, detail: string): Check => ({ name, ok: c, detail });

function statuses(answers: AdminAnswer[]): string {
  const counts = new Map<string, number>();
  for (const a of answers) {
    const k = a.error ?? String(a.status);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts.entries()].map(([k, n]) => `${k} ×${n}`).join(", ");
}

/** How much a fault added to the p95 of warm traffic, against the quieter of the warm-up and the 2 s before it. */
function addedP95(start: number, from: number, to: number): { added: number; during: Latency; base: number } {
  const before = latency(between(samples, start - BEFORE_MS, start).filter((s) => s.delay === 0));
  const base = Math.min(baseline.p95, Number.isFinite(before.p95) ? before.p95 : baseline.p95);
  const during = latency(between(samples, from, to).filter((s) => s.delay === 0));
  return { added: during.p95 - base, during, base };
}

/** When a router first gave a correct 2xx for `host` after `from`, probing every 100 ms until `until`. */
async function untilRouted(
  router: number,
  lane: string,
  info: Expected & { host: string },
  until: number,
): Promise<number | null> {
  while (Date.now() < until) {
    const s = await probe(router, lane, info.host, info);
    if (s.cls === "ok") return s.t;
    await sleep(100);
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Scenarios

await scenario("baseline", "no fault (warm-up)", async () => {
  const now = Date.now();
  return { window: { start: loadStart, removed: now, end: now }, noRecovery: true, checks: [], notes: [] };
});

await scenario("redis-blackhole", "Redis paused (SIGSTOP) 10 s", async () => {
  await sleep(BEFORE_MS);
  const start = Date.now();
  redis?.pause();
  await sleep(10_000);
  redis?.resume();
  const removed = Date.now();
  await sleep(8_000);
  const end = Date.now();
  const { added, during, base } = addedP95(start, start + 2_000, removed);
  return {
    window: { start, removed, end },
    recoveryTargetMs: 5_000,
    checks: [
      ok(
        added <= 50,
        "p95 added for warm tenants ≤ 50 ms after the first 2 s",
        `${fmtMs(added)} ms (p95 ${fmtMs(during.p95)} against ${fmtMs(base)} ms)`,
      ),
    ],
    notes: [],
  };
});

await scenario("redis-kill", "Redis killed 10 s, restarted empty; admin writes meanwhile", async () => {
  await sleep(BEFORE_MS);
  const start = Date.now();
  await redis?.kill();
  await sleep(1_000);
  // Admin writes while Redis is down: a new tenant, and a routing change of a warm one.
  const late = { slug: "late", tenantId: "", host: `late.${DOMAIN}` };
  const writes: { what: string; a: AdminAnswer }[] = [];
  const created = await admin("POST", "/v1/tenants", { slug: "late", name: "Faults late", plan: "enterprise" });
  writes.push({ what: "POST /v1/tenants late", a: created });
  late.tenantId = String((created.body as { id?: string } | null)?.id ?? "");
  writes.push({
    what: "PUT late/database",
    a: await admin("PUT", "/v1/tenants/late/database", { server: "pg-late.internal:5432", database: "late" }),
  });
  writes.push({ what: "PUT late/upstreams", a: await admin("PUT", "/v1/tenants/late/upstreams", { urls: [lateApp.url] }) });
  writes.push({
    what: "PUT charlie/upstreams",
    a: await admin("PUT", "/v1/tenants/charlie/upstreams", { urls: [charlieB.url] }),
  });
  const writesDone = Date.now();
  // Probe the new tenant on both routers from now on (after the writes, never before).
  const probing = [0, 1].map((r) => untilRouted(r, "probe:late", late, start + 10_000 + 8_000));
  await sleep(start + 10_000 - Date.now());
  await redis?.restart();
  const removed = Date.now();
  // A tenant no router has seen: routed from the source of truth once Redis is back (empty).
  const cold = [0, 1].map((r) => untilRouted(r, "probe:cold2", { ...t("cold2") }, removed + 8_000));
  await sleep(8_000);
  const end = Date.now();
  const lateAt = await Promise.all(probing);
  const coldAt = await Promise.all(cold);
  // When every answer for charlie from each router came from its new upstream.
  const charlieAt = [0, 1].map((r) => {
    const list = between(samples, writesDone - 2_000, end).filter(
      (s) => s.router === r && s.lane === "host:charlie" && s.cls === "ok",
    );
    let last = Number.NaN;
    for (const s of list) if (s.app !== charlieB.name) last = s.t;
    const firstNew = list.find((s) => s.t > (Number.isNaN(last) ? 0 : last) && s.app === charlieB.name);
    return firstNew ? firstNew.t : null;
  });
  const rel = (at: number | null) => (at === null ? "never" : `${at < removed ? "before recovery" : `+${at - removed} ms`}`);
  const effect = (at: (number | null)[]) => at.every((x) => x !== null && x - removed <= 1_000);
  const writesOk = writes.every((w) => w.a.status >= 200 && w.a.status < 300);
  return {
    window: { start, removed, end },
    recoveryTargetMs: 5_000,
    checks: [
      ok(writesOk, "admin writes during the outage succeed", writes.map((w) => `${w.what} ${describe(w.a)}`).join("; ")),
      ok(
        effect(lateAt),
        "new tenant routed by both routers ≤ 1 s after recovery",
        `router a ${rel(lateAt[0] ?? null)}, b ${rel(lateAt[1] ?? null)}`,
      ),
      ok(
        effect(charlieAt),
        "upstream change of a warm tenant in effect on both routers ≤ 1 s after recovery",
        `router a ${rel(charlieAt[0] ?? null)}, b ${rel(charlieAt[1] ?? null)}`,
      ),
      ok(
        coldAt.every((x) => x !== null && x - removed <= 5_000),
        "a tenant never requested before is routed (source of truth) ≤ 5 s after Redis returns",
        `router a ${rel(coldAt[0] ?? null)}, b ${rel(coldAt[1] ?? null)}`,
      ),
    ],
    notes: [],
  };
});

await scenario("redis-slow", "Redis slow 10 s (DEBUG SLEEP 100 ms every 200 ms)", async () => {
  await sleep(BEFORE_MS);
  const start = Date.now();
  const client = new Redis(redis?.url ?? "", { maxRetriesPerRequest: 0, lazyConnect: true });
  client.on("error", () => {});
  await client.connect();
  let stop = false;
  let sleeps = 0;
  const loop = (async () => {
    while (!stop) {
      await client.call("DEBUG", "SLEEP", "0.1").catch(() => {});
      sleeps++;
      await sleep(100);
    }
  })();
  await sleep(10_000);
  stop = true;
  await loop;
  client.disconnect();
  const removed = Date.now();
  await sleep(6_000);
  const end = Date.now();
  return { window: { start, removed, end }, checks: [], notes: [`${sleeps} DEBUG SLEEPs of 100 ms`] };
});

await scenario(
  "postgres",
  `Postgres unreachable ${PG_OUTAGE_MS / 1000} s (black-holed, then refused); admin writes meanwhile`,
  async () => {
    await sleep(BEFORE_MS);
    const start = Date.now();
    pgProxy.blackhole();
    const writes: { at: string; a: AdminAnswer }[] = [];
    let refused = false;
    let n = 0;
    while (Date.now() < start + PG_OUTAGE_MS) {
      if (!refused && Date.now() >= start + PG_OUTAGE_MS / 2) {
        // Released: connections are refused (ECONNREFUSED), as by a stopped server.
        await pgProxy.close();
        refused = true;
      }
      const slot = Date.now();
      const a =
        n % 2 === 0
          ? await admin("PATCH", "/v1/tenants/delta", { settings: { branding: { displayName: `Faults delta ${n}` } } }, 8_000)
          : await admin("POST", "/v1/tenants/bravo/keys", { name: `during-outage-${n}` }, 8_000);
      writes.push({ at: `${refused ? "refused" : "black hole"} +${((slot - start) / 1000).toFixed(0)} s`, a });
      n++;
      await sleep(Math.min(slot + 5_000, start + PG_OUTAGE_MS) - Date.now());
    }
    if (!refused) await pgProxy.close();
    await pgProxy.start(pgProxy.port);
    const removed = Date.now();
    // The first admin write that succeeds again.
    let firstWrite: number | null = null;
    while (firstWrite === null && Date.now() < removed + 10_000) {
      const a = await admin("PATCH", "/v1/tenants/delta", { settings: { branding: { displayName: "Faults delta" } } }, 5_000);
      if (a.status === 200) firstWrite = Date.now() - removed;
      else await sleep(250);
    }
    await sleep(Math.max(0, removed + 8_000 - Date.now()));
    const end = Date.now();
    // Audit: every answer the routers gave in the window must be in Postgres once the consumer catches up.
    await waitForAnswers(end);
    const rids = [...new Set(between(samples, start, end).flatMap((s) => (s.rid ? [s.rid] : [])))];
    // A control plane that died meanwhile is started again first, as an orchestrator
    // would: its audit consumer is what moves the events into Postgres.
    const crashed = controlPlane.running ? "" : "the control plane had exited; restarted before counting audit rows";
    if (!controlPlane.running) await controlPlane.start();
    const sql = db.sql as NonNullable<typeof db.sql>;
    const count = async () => {
      let n = 0;
      for (let i = 0; i < rids.length; i += 5_000) {
        const [row] = await sql`
          select count(distinct request_id)::int as n from audit_events where request_id in ${sql(rids.slice(i, i + 5_000))}`;
        n += Number(row?.n ?? 0);
      }
      return n;
    };
    let found = 0;
    const catchUpStart = Date.now();
    let sameSince = Date.now();
    while (Date.now() - catchUpStart < 25_000) {
      const now = await count();
      if (now !== found) sameSince = Date.now();
      found = now;
      if (found >= rids.length || Date.now() - sameSince > 8_000) break;
      await sleep(1_000);
    }
    const lost = rids.length - found;
    const warmServed = between(samples, start, removed);
    const served = warmServed.filter((s) => s.cls === "ok").length;
    const slowWrites = writes.filter((w) => !isJson503(w.a) || w.a.ms > 5_000);
    return {
      window: { start, removed, end },
      auditLost: lost,
      recoveryTargetMs: undefined,
      checks: [
        ok(
          served === warmServed.length,
          "warm tenants (hosts and keys) served throughout the outage",
          `${served} of ${warmServed.length} correct 2xx (${((100 * served) / Math.max(1, warmServed.length)).toFixed(2)} %)`,
        ),
        ok(
          slowWrites.length === 0,
          "admin writes during the outage: 503 JSON error within 5 s",
          writes.map((w) => `${w.at}: ${describe(w.a)}`).join("; "),
        ),
        ok(
          lost === 0,
          "audit events lost",
          `${lost} of ${rids.length} answers with no audit row after ${((Date.now() - catchUpStart) / 1000).toFixed(1)} s of catch-up`,
        ),
      ],
      notes: [
        firstWrite === null
          ? "no admin write succeeded within 10 s of Postgres returning"
          : `first admin write to succeed: +${firstWrite} ms after Postgres returned`,
        ...(crashed ? [crashed] : []),
      ],
    };
  },
);

await scenario("key-service", "key service stopped (SIGSTOP) 5 s, then killed 5 s, restarted", async () => {
  // Uncached: never used, and their entries removed from Redis.
  const client = new Redis(redis?.url ?? "", { maxRetriesPerRequest: 1, lazyConnect: true });
  client.on("error", () => {});
  await client.connect();
  await client.del(...uncachedKeys.map((k) => prefix + CACHE.apiKey.key(hashApiKey(k.key))));
  client.disconnect();
  await sleep(BEFORE_MS);
  const start = Date.now();
  keyService.pause();
  await sleep(1_000);
  const ask = (keys: { key: string }[], offset: number) =>
    Promise.all(keys.map((k, i) => probe((offset + i) % 2, "probe:uncached-key", API_HOST, t("charlie"), k.key)));
  const stopped = await ask(uncachedKeys.slice(0, 8), 0);
  await sleep(start + 5_000 - Date.now());
  await keyService.kill();
  await sleep(1_000);
  const killed = await ask(uncachedKeys.slice(8), 0);
  await sleep(start + 10_000 - Date.now());
  await keyService.start();
  const removed = Date.now();
  await sleep(1_000);
  const again = await ask(uncachedKeys, 1);
  await sleep(removed + 6_000 - Date.now());
  const end = Date.now();
  const cachedKeys = between(samples, start, removed).filter((s) => s.lane.startsWith("key:"));
  const cachedOk = cachedKeys.filter((s) => s.cls === "ok").length;
  const fast = (list: Sample[]) =>
    list.every((s) => s.status === 503 && s.cls === "refusal" && s.ms <= KEY_SERVICE_TIMEOUT_MS + KEY_SERVICE_SLACK_MS);
  const show = (list: Sample[]) =>
    `${tallyText(tally(list))}; p50 ${fmtMs(
      percentile(
        list.map((s) => s.ms),
        50,
      ),
    )}, max ${fmtMs(Math.max(...list.map((s) => s.ms)))} ms`;
  return {
    window: { start, removed, end },
    recoveryTargetMs: undefined,
    checks: [
      ok(
        fast(stopped),
        `uncached keys, key service black-holed: 503 within KEY_SERVICE_TIMEOUT_MS (${KEY_SERVICE_TIMEOUT_MS} ms, +${KEY_SERVICE_SLACK_MS} ms)`,
        show(stopped),
      ),
      ok(fast(killed), "uncached keys, key service killed: 503 within KEY_SERVICE_TIMEOUT_MS", show(killed)),
      ok(
        cachedOk === cachedKeys.length,
        "cached keys served while the key service is down",
        `${cachedOk} of ${cachedKeys.length} correct 2xx`,
      ),
    ],
    notes: [`the uncached keys once the key service is back: ${show(again)}`],
  };
});

async function upstreamScenario(name: string, fault: string, inject: () => Promise<void>, remove: () => Promise<void>) {
  await scenario(name, fault, async () => {
    await sleep(BEFORE_MS);
    const start = Date.now();
    const aBefore = multiA.served;
    await inject();
    await sleep(6_000);
    await remove();
    const removed = Date.now();
    await sleep(5_000);
    const end = Date.now();
    const multi = between(samples, start + 2_000, removed).filter((s) => s.lane === "host:multi");
    const good = multi.filter((s) => s.cls === "ok").length;
    const viaOther = multi.filter((s) => s.cls === "ok" && s.app === multiB.name).length;
    const appCounts = new Map<string, number>();
    for (const s of multi) if (s.cls === "ok") appCounts.set(s.app, (appCounts.get(s.app) ?? 0) + 1);
    return {
      window: { start, removed, end },
      recoveryTargetMs: undefined,
      checks: [
        ok(
          good === multi.length && multi.length > 0 && latency(multi).p95 - baseline.p95 <= 50,
          "two-upstream tenant: every request after the first 2 s of the fault a correct 2xx, p95 added ≤ 50 ms over the warm-up",
          `${good} of ${multi.length} correct 2xx, ${viaOther} by ${multiB.name}; answered by ${[...appCounts.entries()].map(([a, c]) => `${a} ×${c}`).join(", ") || "none"}; p95 ${fmtMs(latency(multi).p95)} ms (warm-up ${fmtMs(baseline.p95)} ms)`,
        ),
      ],
      notes: [`multi-a served ${multiA.served - aBefore} requests in the scenario`],
    };
  });
}

await upstreamScenario(
  "upstream-blackhole",
  "one of two upstreams black-holed 6 s",
  async () => upProxy?.blackhole(),
  async () => upProxy?.heal(),
);
await upstreamScenario(
  "upstream-refused",
  "one of two upstreams refusing connections 6 s",
  async () => {
    await upProxy?.close();
  },
  async () => {
    await upProxy?.start(upProxy.port);
  },
);
await upstreamScenario(
  "upstream-slow",
  "one of two upstreams answering 1 s late for 6 s",
  async () => {
    multiA.delayMs = 1_000;
  },
  async () => {
    multiA.delayMs = 0;
  },
);

await scenario("router-sigterm", "SIGTERM to router b under load (every 3rd request 400 ms upstream), restarted", async () => {
  const target = 1;
  for (const a of apps) a.track = true;
  loadCommand({ type: "delay", ms: 400, every: 3 });
  await sleep(BEFORE_MS);
  const start = Date.now();
  const router = routers[target] as Service;
  const exit = await router.terminate();
  const drained = Date.now();
  await router.start();
  const removed = Date.now();
  await sleep(1_500);
  loadCommand({ type: "delay", ms: 0, every: 0 });
  await sleep(3_500);
  const end = Date.now();
  await waitForAnswers(end);
  const seen = new Set<number>();
  for (const a of apps) for (const s of a.seen) seen.add(s);
  const onTarget = between(samples, start - BEFORE_MS, end).filter((s) => s.router === target);
  const inFlight = onTarget.filter((s) => s.t < start && s.t + s.ms > start);
  const cut = onTarget.filter((s) => s.cls === "error" && seen.has(s.seq));
  const resetBefore = onTarget.filter((s) => s.cls === "error" && !seen.has(s.seq) && s.t < start);
  const refusedAfter = onTarget.filter((s) => s.cls === "error" && !seen.has(s.seq) && s.t >= start);
  const other = between(samples, start, removed).filter((s) => s.router !== target);
  const otherOk = other.filter((s) => s.cls === "ok").length;
  return {
    window: { start, removed, end },
    // Connection errors of requests sent to the stopped router after the signal that it
    // never accepted (no upstream saw them): what a stopping server does.
    excused: (s) => s.router === target && s.cls === "error" && s.t >= start && !seen.has(s.seq),
    recoveryTargetMs: undefined,
    checks: [
      ok(
        cut.length === 0 && resetBefore.length === 0,
        "no request cut mid-flight (every request b accepted, before or after the signal, answered)",
        `${inFlight.length} in flight at the signal, ${inFlight.filter((s) => s.cls === "ok").length} of them answered correct 2xx; ` +
          `accepted (seen by the upstream) but cut: ${cut.length} (${cut.filter((s) => s.t >= start).length} of them sent after the signal on an open keep-alive connection); ` +
          `sent before the signal and reset unanswered: ${resetBefore.length}`,
      ),
      ok(
        exit === 0,
        "router b drained and exited 0",
        `exit ${exit} after ${drained - start} ms${drained - start >= DRAIN_TIMEOUT_MS - 100 ? ` (reached DRAIN_TIMEOUT_MS = ${DRAIN_TIMEOUT_MS}: the rest was closed by force)` : ""}`,
      ),
      ok(otherOk === other.length, "the other router carries on", `${otherOk} of ${other.length} correct 2xx while b was down`),
    ],
    notes: [
      `requests sent to b after the signal, refused at the connection (not counted): ${refusedAfter.length}; b back on its port ${removed - drained} ms after it exited`,
    ],
  };
});

await scenario("revocation-burst", "20 cached keys revoked at once through the admin API", async () => {
  await sleep(BEFORE_MS);
  const start = Date.now();
  const answered = new Map<string, number>();
  const deletes = await Promise.all(
    revocable.map(async (k) => {
      const a = await admin("DELETE", `/v1/tenants/delta/keys/${k.id}`);
      answered.set(k.key, Date.now());
      return a;
    }),
  );
  const allAnswered = Date.now();
  // Probe every key on both routers every 100 ms for 3 s.
  const accepted: { key: number; router: number; sinceMs: number }[] = [];
  let sent = 0;
  while (Date.now() < allAnswered + 3_000) {
    const round = Date.now();
    await Promise.all(
      revocable.flatMap((k, i) =>
        [0, 1].map(async (r) => {
          const s = await probe(r, "probe:revoked", API_HOST, t("delta"), k.key);
          sent++;
          if (s.cls === "ok") accepted.push({ key: i, router: r, sinceMs: s.t - (answered.get(k.key) ?? 0) });
        }),
      ),
    );
    await sleep(round + 100 - Date.now());
  }
  const removed = allAnswered;
  await sleep(1_000);
  const end = Date.now();
  const late = accepted.filter((a) => a.sinceMs > 1_000);
  const lastAccept = accepted.length === 0 ? null : Math.max(...accepted.map((a) => a.sinceMs));
  const deleteMs = deletes.map((d) => d.ms);
  return {
    window: { start, removed, end },
    noRecovery: true,
    checks: [
      ok(
        deletes.every((d) => d.status === 204),
        "revocations answered 204",
        `${statuses(deletes)}; p50 ${fmtMs(percentile(deleteMs, 50))}, max ${fmtMs(Math.max(...deleteMs))} ms`,
      ),
      ok(
        late.length === 0,
        "no revoked key accepted > 1 s after its revocation answered",
        `${sent} probes; accepted after the answer: ${accepted.length}, of which > 1 s: ${late.length}${lastAccept === null ? "" : `; latest +${lastAccept} ms`}`,
      ),
    ],
    notes: [],
  };
});

// ---------------------------------------------------------------------------------------------
// Report

loadCommand({ type: "stop" });
await Promise.race([loadFinished, sleep(CLIENT_TIMEOUT_MS + 2_000)]);
const tail = [...samples, ...probes].filter((s) => s.t >= lastScenarioEnd);
const tailBad = tally(tail, (s) => s.cls === "wrong" || s.cls === "bad" || s.cls === "error");
const tailLine = `After the last scenario, until the load stopped: ${tail.length} requests${tailBad.size > 0 ? `, **not all correct: ${tallyText(tailBad)}**` : ", none wrong-tenant or non-contract"}.`;
const totalS = (Date.now() - began) / 1000;
const allPass = results.length > 0 && results.every(passed) && tailBad.size === 0;
const stamp = new Date(began)
  .toISOString()
  .replace(/:/g, "-")
  .replace(/\.\d+Z$/, "");
const md = table(results);
const how =
  `${QUICK ? "Quick run (Postgres down 16 s)" : "Full run"} of ${new Date(began).toISOString().slice(0, 16).replace("T", " ")} UTC, ${totalS.toFixed(0)} s: ` +
  `2 routers, control plane and key service as separate processes (NODE_ENV=production, KEY_SERVICE_TIMEOUT_MS=${KEY_SERVICE_TIMEOUT_MS}, UPSTREAM_HEADERS_TIMEOUT_MS=${UPSTREAM_HEADERS_TIMEOUT_MS}, DRAIN_TIMEOUT_MS=${DRAIN_TIMEOUT_MS}), ` +
  `own redis-server, throw-away Postgres database behind a TCP relay; ${RATE} req/s open loop over both routers ` +
  `(5 tenants by Host, one with 2 upstreams, 4 API keys on ${API_HOST}), every answer checked. ` +
  `Latency: p50/p95/p99 of the steady traffic sent while the fault lasted and after it; ` +
  `time to recover: from the fault's removal to the first 2 s in which every 250 ms of warm traffic is all correct 2xx with p90 ≤ 2× the p99 of the quieter of the warm-up and the 2 s before the fault ` +
  `(warm-up p50/p95/p99 ${fmtMs(baseline.p50)}/${fmtMs(baseline.p95)}/${fmtMs(baseline.p99)} ms).`;
const report = `# npm run faults — ${stamp}\n\n${how}\n\n${md}\n\n${tailLine} Total: ${totalS.toFixed(0)} s. ${allPass ? "Every target met." : "Some targets missed."}\n\n## Checks\n\n${checksText(results)}\n`;
console.log(`\n${md}\n\n${checksText(results)}\n`);
const resultsDir = join(ROOT, "bench", "results");
mkdirSync(resultsDir, { recursive: true });
const file = join(resultsDir, `${stamp}-faults.md`);
writeFileSync(file, report);
if (ONLY.length === 0) {
  updateFaultsSection(
    join(ROOT, "docs", "operations.md"),
    `Last run: \`bench/results/${stamp}-faults.md\` (${QUICK ? "quick: Postgres down 16 s" : "full"}). ${allPass ? "Every target met." : "Targets missed are marked FAIL; the checks behind each row are in the results file."}\n\n${table(results, true)}\n\n${how}`,
  );
}
await cleanup();
if (allPass) rmSync(logDir, { recursive: true, force: true });
console.log(`results: ${file}${allPass ? "" : `\nservice logs: ${logDir}`}`);
console.log(`total time: ${totalS.toFixed(0)} s (${(totalS / 60).toFixed(1)} min); ${allPass ? "PASS" : "FAIL"}`);
process.exit(allPass ? 0 : 1);
