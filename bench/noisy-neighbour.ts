/**
 * `npm run bench:noisy`: does one tenant flooding at ten times its rate limit hurt
 * another tenant? Boots a stack (router, control plane, key service, two tenants
 * with their own upstreams; embedded PGlite and the in-process store, or real
 * Postgres/Redis when DATABASE_URL/REDIS_URL are set), then measures the quiet
 * tenant's success rate and latency (p50/p99) alone and with the neighbour flooding,
 * and prints both. The load runs in a worker thread so it does not share the
 * router's event loop. A benchmark, not a test: it prints, it does not assert.
 *
 * The two phases alternate for BENCH_ROUNDS rounds and each figure is the median
 * over the rounds, so a burst of load from elsewhere on the machine skews one
 * round, not the result.
 *
 * Settings (environment): BENCH_SECONDS (3 per phase and round), BENCH_ROUNDS (3),
 * QUIET_RPS (200), NOISY_LIMIT_RPS (50; the flood is ten times this),
 * NOISY_RESULT_FILE (also write the result as JSON there: `npm run bench` reads it),
 * REDIS_PREFIX (default: a fresh random prefix).
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

interface Phase {
  ports: number[];
  quietHost: string;
  noisyHost: string | null;
  quietRps: number;
  noisyRps: number;
  seconds: number;
}

interface PhaseResult {
  quiet: { sent: number; ok: number; latencies: number[] };
  noisy: { sent: number; ok: number; limited: number };
}

// ---- load generator (worker thread) ------------------------------------------------
async function runPhase(p: Phase): Promise<PhaseResult> {
  const { Pool } = await import("undici");
  const pools = p.ports.map((port) => new Pool(`http://127.0.0.1:${port}`, { connections: 128, pipelining: 1 }));
  const result: PhaseResult = { quiet: { sent: 0, ok: 0, latencies: [] }, noisy: { sent: 0, ok: 0, limited: 0 } };
  const pending: Promise<void>[] = [];
  const one = async (host: string, quiet: boolean, i: number) => {
    const pool = pools[i % pools.length] as InstanceType<typeof Pool>;
    const started = performance.now();
    try {
      const res = await pool.request({ path: "/", method: "GET", headers: { host } });
      await res.body.dump();
      const ms = performance.now() - started;
      if (quiet) {
        result.quiet.latencies.push(ms);
        if (res.statusCode === 200) result.quiet.ok++;
      } else if (res.statusCode === 200) result.noisy.ok++;
      else if (res.statusCode === 429) result.noisy.limited++;
    } catch {
      if (quiet) result.quiet.latencies.push(performance.now() - started);
    }
  };
  const pace = async (host: string, rps: number, quiet: boolean) => {
    const total = Math.round(rps * p.seconds);
    const start = performance.now();
    for (let i = 0; i < total; i++) {
      const wait = start + (i * 1000) / rps - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      if (quiet) result.quiet.sent++;
      else result.noisy.sent++;
      pending.push(one(host, quiet, i));
    }
  };
  await Promise.all([
    pace(p.quietHost, p.quietRps, true),
    p.noisyHost ? pace(p.noisyHost, p.noisyRps, false) : Promise.resolve(),
  ]);
  await Promise.all(pending);
  await Promise.all(pools.map((pool) => pool.close()));
  return result;
}

if (!isMainThread) {
  parentPort?.postMessage(await runPhase(workerData as Phase));
  process.exit(0);
}

// ---- stack and report (main thread) ----------------------------------------------------
const { getRequestListener } = await import("@hono/node-server");
const { createControlPlane, loadControlPlaneConfig, migrate, openDatabase } = await import("@portcullis/control-plane");
const { loadRouterConfig, startRouter } = await import("@portcullis/router");
const { MemoryStore, RedisStore } = await import("@portcullis/shared");
const { default: pino } = await import("pino");

const settings = {
  seconds: Number(process.env.BENCH_SECONDS ?? 3),
  rounds: Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3)),
  quietRps: Number(process.env.QUIET_RPS ?? 200),
  noisyLimit: Number(process.env.NOISY_LIMIT_RPS ?? 50),
};
const env: Record<string, string | undefined> = {
  ...process.env,
  LOG_LEVEL: "silent",
  // `npm run bench` passes its own prefix so that its clean-up covers these keys too.
  REDIS_PREFIX: process.env.REDIS_PREFIX ?? `pc:bench:${randomBytes(4).toString("hex")}:`,
};
for (const name of ["ADMIN_TOKEN", "KEY_SERVICE_TOKEN", "CONTEXT_SIGNING_SECRET", "SESSION_SECRET"]) {
  if (!env[name]) env[name] = randomBytes(24).toString("base64url");
}
const cpConfig = loadControlPlaneConfig(env);
const dataDir = mkdtempSync(join(tmpdir(), "pc-bench-"));
const database = await openDatabase({ url: cpConfig.databaseUrl, dataDir: join(dataDir, "pglite") });
await migrate(database);
const store = cpConfig.redisUrl ? new RedisStore({ url: cpConfig.redisUrl, prefix: cpConfig.redisPrefix }) : new MemoryStore();
const log = pino({ level: "silent" });
const cp = await createControlPlane(cpConfig, { store, database, log });
const listen = (handler: Parameters<typeof createServer>[1]) =>
  new Promise<Server>((resolve) => {
    const s = createServer(handler);
    s.listen(0, "127.0.0.1", () => resolve(s));
  });
const keyServer = await listen(getRequestListener(cp.keyService.fetch));
const keyPort = (keyServer.address() as AddressInfo).port;
const routerConfig = loadRouterConfig(
  { ...env, KEY_SERVICE_URL: `http://127.0.0.1:${keyPort}` },
  { port: 0, opsPort: 0, host: "127.0.0.1" },
);
const router = await startRouter(routerConfig, { store, log, auditWriter: async () => {} });

// Minimal upstreams: a fixed small body, as fast as Node answers.
const upstreams: Server[] = [];
const tenants = [
  { slug: "quiet", plan: "enterprise", limits: {} },
  { slug: "noisy", plan: "free", limits: { requestsPerSecond: settings.noisyLimit, burst: settings.noisyLimit } },
];
for (const t of tenants) {
  const upstream = await listen((_req, res) => {
    res.writeHead(200, { "content-type": "text/plain", "content-length": "2" });
    res.end("ok");
  });
  upstreams.push(upstream);
  const created = await cp.tenants.create({ slug: t.slug, name: t.slug, plan: t.plan });
  if (!created.ok) throw new Error(`tenant ${t.slug}: ${created.code}`);
  await cp.tenants.putDatabase(t.slug, { server: `pg-${t.slug}.bench:5432`, database: t.slug });
  await cp.tenants.putUpstreams(t.slug, [`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`]);
  await cp.tenants.patch(t.slug, { limits: t.limits });
}
await cp.publisher.flush();

function phase(noisy: boolean): Promise<PhaseResult> {
  const data: Phase = {
    ports: [router.port],
    quietHost: `quiet.${cpConfig.platformDomain}`,
    noisyHost: noisy ? `noisy.${cpConfig.platformDomain}` : null,
    quietRps: settings.quietRps,
    noisyRps: settings.noisyLimit * 10,
    seconds: settings.seconds,
  };
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: data });
    worker.once("message", resolve);
    worker.once("error", reject);
  });
}

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0 ? Number.NaN : (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number);

const median = (xs: number[]) => {
  const sorted = [...xs].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)] as number;
};

function summary(r: PhaseResult) {
  const sorted = [...r.quiet.latencies].sort((x, y) => x - y);
  return {
    success: r.quiet.sent === 0 ? 0 : (100 * r.quiet.ok) / r.quiet.sent,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    noisy: r.noisy,
  };
}

// Warm-up: connections, caches, JIT.
await phase(false);
const rounds: { alone: ReturnType<typeof summary>; flooded: ReturnType<typeof summary> }[] = [];
for (let i = 0; i < settings.rounds; i++) {
  const alone = summary(await phase(false));
  const flooded = summary(await phase(true));
  rounds.push({ alone, flooded });
}

console.log(
  `\nnoisy neighbour (${store.kind} store, ${database.kind}; ${settings.rounds} rounds of ${settings.seconds} s per phase; ` +
    `quiet ${settings.quietRps} rps; neighbour limited to ${settings.noisyLimit} rps, flooding at ${settings.noisyLimit * 10} rps)\n`,
);
console.log("round  phase                  quiet success   p50 ms   p99 ms   neighbour sent / ok / 429");
rounds.forEach((r, i) => {
  for (const [name, x] of [
    ["quiet tenant alone", r.alone],
    ["with noisy neighbour", r.flooded],
  ] as const) {
    const n = x.noisy.sent === 0 ? "-" : `${x.noisy.sent} / ${x.noisy.ok} / ${x.noisy.limited}`;
    console.log(
      `${String(i + 1).padEnd(6)} ${name.padEnd(22)} ${`${x.success.toFixed(2)} %`.padStart(13)} ${x.p50.toFixed(2).padStart(8)} ${x.p99.toFixed(2).padStart(8)}   ${n}`,
    );
  }
});
const m = (pick: (r: (typeof rounds)[number]) => number) => median(rounds.map(pick));
const success = m((r) => r.flooded.success) / m((r) => r.alone.success);
console.log(
  `\nmedian over rounds: quiet success ${m((r) => r.alone.success).toFixed(2)} % alone, ${m((r) => r.flooded.success).toFixed(2)} % flooded (ratio ${success.toFixed(3)}); ` +
    `p50 ${m((r) => r.alone.p50).toFixed(2)} -> ${m((r) => r.flooded.p50).toFixed(2)} ms (ratio ${(m((r) => r.flooded.p50) / m((r) => r.alone.p50)).toFixed(2)}); ` +
    `p99 ${m((r) => r.alone.p99).toFixed(2)} -> ${m((r) => r.flooded.p99).toFixed(2)} ms (ratio ${(m((r) => r.flooded.p99) / m((r) => r.alone.p99)).toFixed(2)})`,
);

if (process.env.NOISY_RESULT_FILE) {
  const figures = (pick: (r: (typeof rounds)[number]) => ReturnType<typeof summary>) => ({
    successPercent: m((r) => pick(r).success),
    p50ms: m((r) => pick(r).p50),
    p99ms: m((r) => pick(r).p99),
  });
  const result = {
    store: store.kind,
    database: database.kind,
    settings: { ...settings, floodRps: settings.noisyLimit * 10 },
    alone: figures((r) => r.alone),
    flooded: figures((r) => r.flooded),
    rounds,
  };
  writeFileSync(process.env.NOISY_RESULT_FILE, `${JSON.stringify(result)}\n`);
}

await router.close();
for (const s of [keyServer, ...upstreams]) {
  s.closeAllConnections();
  s.close();
}
await cp.close();
await store.close();
await database.close();
rmSync(dataDir, { recursive: true, force: true });
