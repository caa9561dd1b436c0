/**
 * `npm run bench:hot`: a short A/B loop for work on the router's hot path, without the
 * control plane. The router's cache is seeded straight from a tenant template (as the
 * full benchmark does for its large tenant counts), Redis is the store, the limits of
 * the full benchmark are on (every request passes the limiter), audit events go to the
 * store's durable stream, and the router runs beside the bare node:http + undici
 * forwarder and the node:http floor (node:http + Portcullis's own client, nothing
 * checked) on the same core, in rotating order. It prints req/s and the target's CPU
 * time per request (the steadier figure), and each one's ratios to the bare forwarder.
 *
 *   npm run bench:hot                          3 alternating rounds of 5 s
 *   npm run bench:hot -- --rounds 5 --seconds 4
 *   npm run bench:hot -- --profile /tmp/p.cpuprofile   CPU profile of the router's last
 *                                              measured run
 *   npm run bench:hot -- --no-limits --audit-off   what limits and audit cost
 *   npm run bench:hot -- --hosts 100000        spread over 100,000 tenants (default 1,000)
 *   npm run bench:hot -- --alloc-profile /tmp/a.heapprofile   sampled allocations of the
 *                                              router during the fixed-rate run (with --rate);
 *                                              --alloc-survivors: only what outlived a scavenge
 *   npm run bench:hot -- --rate 1000 --rate-profile /tmp/r.cpuprofile   CPU profile of the
 *                                              router during the fixed-rate run
 *   npm run bench:hot -- --rate 1000 --rate-only Portcullis   only that fixed-rate target
 *   npm run bench:hot -- --router-flags "--trace-gc"   Node flags for the router process
 *   npm run bench:hot -- --floor-variants      adds the design floor with overrideGlobalObjects: false,
 *                                              with autoCleanupIncoming: false, and on Hono's
 *                                              LinearRouter and PatternRouter (A/Bs of the floor)
 *   npm run bench:hot -- --no-stages           without the per-stage CPU and allocation table
 *   npm run bench:hot -- --baseline DIR        adds the router of another checkout (made by
 *                                              `sh scripts/baseline.sh REV`), same seed and rounds
 *   npm run bench:hot -- --rate 1000 --preload 100000   before the fixed-rate runs, the router
 *                                              serves 100,000 other tenants once (as the full
 *                                              benchmark's router has before its own)
 *   npm run bench:hot -- --rate 1000           then open-loop latency at 1,000 req/s: a direct
 *                                              upstream alone on its core, the bare forwarder and
 *                                              the router (--rate-warmup S uncounted first, 15)
 *
 * Not the benchmark of record: `npm run bench` is.
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { cpuSeconds, dropRedisPrefix, fixedRate, routerTimes, shareUnderOneMs, startNode } from "./processes.ts";
import { allocatedBytes, type CpuProfile, formatStageCosts, type HeapProfile, stageCosts } from "./stage-costs.ts";
import { has, type HostSet, runWrk } from "./load.ts";
import { benchTenant } from "./tenant.ts";

const _here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const option = (name: string, fallback: string) => {
  const i = argv.indexOf(name);
  return i === -1 ? fallback : (argv[i + 1] ?? fallback);
};
const ROUNDS = Number(option("--rounds", "3"));
const SECONDS = Number(option("--seconds", "5"));
const PROFILE = option("--profile", "");
const ALLOC_PROFILE = option("--alloc-profile", "");
const ALLOC_SURVIVORS = argv.includes("--alloc-survivors");
const RATE_PROFILE = option("--rate-profile", "");
const RATE = Number(option("--rate", "0"));
// Uncounted seconds at the fixed rate before the measured ones: JIT and leases settle.
const RATE_WARMUP = Number(option("--rate-warmup", "15"));
// Only the fixed-rate targets whose names include one of these (e.g. "Portcullis").
const RATE_ONLY = option("--rate-only", "")
  .split(",")
  .filter((t) => t !== "");
// Extra Node flags for the router process, e.g. --router-flags "--trace-gc".
const ROUTER_FLAGS = option("--router-flags", "")
  .split(" ")
  .filter((f) => f !== "");
// What a feature costs: tenants without limits (the limiter is skipped), audit off.
const NO_LIMITS = argv.includes("--no-limits");
const AUDIT_OFF = argv.includes("--audit-off");
// Hostnames (one tenant each) the load spreads over: 100000 shows what sparse tenants cost.
const HOSTS = Number(option("--hosts", "1000"));
// A same-run A/B of a change: a second router from another checkout of the repository
// (`scripts/baseline.sh REV` prepares one), same seed, same rounds.
const BASELINE = option("--baseline", "");
// A/Bs of the design floor itself: the adapter's options and Hono's router.
const FLOOR_VARIANTS = argv.includes("--floor-variants");
// Tenants the router serves (then forgets from its cache) before the fixed-rate runs, as
// the full benchmark's router has served its 100,000-tenant rows before its latency runs.
const PRELOAD = Number(option("--preload", "0"));
// Heap snapshots of the router (`<prefix>.preload.heapsnapshot` right after the preload,
// `<prefix>.rate.heapsnapshot` after its fixed-rate run): what its other tenants left.
const HEAP_SNAPSHOT = option("--heap-snapshot", "");
// The per-stage table at the end (two more runs of the router, profiled).
const NO_STAGES = argv.includes("--no-stages");
const DESIGN_FLOOR = "Hono + signed context floor";
const DOMAIN = "bench.test";

if (!has("wrk")) {
  console.error("bench:hot needs wrk (apt-get install -y wrk)");
  process.exit(2);
}
const TASKSET = has("taskset") && availableParallelism() >= 2;
const LOAD_CPU = TASKSET ? "0" : null;
const TARGET_CPU = TASKSET ? "1" : null;

const children: ChildProcess[] = [];
const tmp = mkdtempSync(join(tmpdir(), "pc-hot-"));
process.on("exit", () => {
  for (const c of children) c.kill("SIGTERM");
  rmSync(tmp, { recursive: true, force: true });
});

const start = async (file: string, cpu: string | null, options: unknown, nodeArgs: string[] = []) => {
  const p = await startNode(children, file, cpu, options, nodeArgs);
  return { ...p, pid: p.child.pid as number };
};

const upstream = await start("upstream.ts", LOAD_CPU, {});
const origin = `http://127.0.0.1:${upstream.port}`;
const env = {
  ADMIN_TOKEN: randomBytes(16).toString("hex"),
  KEY_SERVICE_TOKEN: randomBytes(16).toString("hex"),
  CONTEXT_SIGNING_SECRET: randomBytes(16).toString("hex"),
  SESSION_SECRET: randomBytes(16).toString("hex"),
  PLATFORM_DOMAIN: DOMAIN,
  LOG_LEVEL: "silent",
  // Nothing listens here: every lookup is answered from the seeded memory tier.
  KEY_SERVICE_URL: "http://127.0.0.1:9",
  REDIS_URL: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
  REDIS_PREFIX: `pc-hot-${randomBytes(4).toString("hex")}:`,
  ...(AUDIT_OFF ? { ROUTER_AUDIT: "off" } : {}),
};
const router = await start("router.ts", TARGET_CPU, { env }, ["--expose-gc", ...ROUTER_FLAGS]);
const baseline = BASELINE
  ? await start(
      resolve(BASELINE, "bench/procs/router.ts"),
      TARGET_CPU,
      { env: { ...env, REDIS_PREFIX: `${env.REDIS_PREFIX}b:` } },
      ["--expose-gc", ...ROUTER_FLAGS],
    )
  : null;
const bare = await start("peer-bare-undici.ts", TARGET_CPU, { hosts: HOSTS, domain: DOMAIN, upstream: origin });
// The floor of a node:http gateway: the server side and Portcullis's own client, nothing checked.
const floor = await start("peer-bare-h1.ts", TARGET_CPU, { hosts: HOSTS, domain: DOMAIN, upstream: origin });
// The floor of Portcullis's design: Hono's Node adapter and the signed tenant context, nothing checked.
const floorSettings = { hosts: HOSTS, domain: DOMAIN, upstream: origin, secret: env.CONTEXT_SIGNING_SECRET };
const design = await start("peer-design-floor.ts", TARGET_CPU, floorSettings);

const variants = FLOOR_VARIANTS
  ? [
      { name: "floor, overrideGlobalObjects off", options: { adapter: { overrideGlobalObjects: false } } },
      { name: "floor, autoCleanupIncoming off", options: { adapter: { autoCleanupIncoming: false } } },
      { name: "floor, LinearRouter", options: { router: "linear" } },
      { name: "floor, PatternRouter", options: { router: "pattern" } },
    ]
  : [];
const variantProcs = await Promise.all(
  variants.map(async (v) => ({
    name: v.name,
    proc: await start("peer-design-floor.ts", TARGET_CPU, { ...floorSettings, ...v.options }),
  })),
);

const template = benchTenant(origin);
if (NO_LIMITS)
  template.limits = { requestsPerSecond: null, burst: null, monthlyRequests: null, concurrency: null, maxBodyBytes: null };
// Before each run: the audit stream emptied (every event of the run is appended) and
// the seeded entries fresh again.
const seedOf = (target: typeof router) => async () => {
  await target.ask({ type: "clear-audit" });
  await target.ask({
    type: "seed",
    count: HOSTS,
    prefix: "t",
    domain: DOMAIN,
    template: JSON.stringify(template),
    persist: true,
  });
};
const seed = seedOf(router);

const hosts: HostSet = { prefix: "t", count: HOSTS, domain: DOMAIN };
const targets = [
  { name: "Portcullis", proc: router, before: seed },
  { name: "bare node:http + undici", proc: bare, before: async () => {} },
  { name: "node:http floor", proc: floor, before: async () => {} },
  { name: DESIGN_FLOOR, proc: design, before: async () => {} },
  ...variantProcs.map((v) => ({ name: v.name, proc: v.proc, before: async () => {} })),
  ...(baseline ? [{ name: "Portcullis (baseline)", proc: baseline, before: seedOf(baseline) }] : []),
];
const results = new Map<string, { rps: number; us: number }[]>();
// Round 0 warms every target (JIT tiers, connections, leases) and is not counted.
if (ROUNDS > 0)
  for (const t of targets) {
    await t.before();
    await runWrk({ port: t.proc.port, connections: 64, hosts, cpu: LOAD_CPU, tmp, seconds: 3 });
  }
for (let round = 0; round < ROUNDS; round++) {
  // A different order each round (rotated), so no target always follows the same one.
  for (const t of [...targets.slice(round % targets.length), ...targets.slice(0, round % targets.length)]) {
    await t.before();
    const base = { port: t.proc.port, connections: 64, hosts, cpu: LOAD_CPU, tmp };
    await runWrk({ ...base, seconds: 1 });
    // The profile covers the router's measured run of the last round only.
    const profiling = PROFILE !== "" && t.proc === router && round === ROUNDS - 1;
    if (profiling) await router.ask({ type: "cpu-start" });
    const cpu0 = cpuSeconds(t.proc.pid);
    const r = await runWrk({ ...base, seconds: SECONDS });
    if (profiling) await router.ask({ type: "cpu-stop", file: PROFILE });
    const us = ((cpuSeconds(t.proc.pid) - cpu0) * 1e6) / r.requests;
    results.set(t.name, [...(results.get(t.name) ?? []), { rps: r.rps, us }]);
    console.log(
      `${t.name.padEnd(28)} ${Math.round(r.rps).toString().padStart(7)} req/s  ${us.toFixed(1).padStart(6)} µs/req  p99 ${r.p99ms.toFixed(2)} ms${r.errors ? `  ERRORS ${r.errors}` : ""}`,
    );
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const b = results.get("bare node:http + undici") ?? [];
if (ROUNDS > 0)
  for (const name of ["Portcullis", "node:http floor", DESIGN_FLOOR]) {
    const p = results.get(name) ?? [];
    // Ratios to the bare forwarder within each round, then their median: steadier than
    // either figure alone on a machine whose speed drifts between rounds.
    const rps = median(p.map((x, i) => x.rps / (b[i]?.rps ?? Number.NaN)));
    const cpu = median(p.map((x, i) => x.us / (b[i]?.us ?? Number.NaN)));
    console.log(
      `median: ${name} ${Math.round(median(p.map((x) => x.rps)))} req/s (${median(p.map((x) => x.us)).toFixed(1)} µs/req), bare ${Math.round(median(b.map((x) => x.rps)))} req/s (${median(b.map((x) => x.us)).toFixed(1)} µs/req): ${rps.toFixed(2)}× bare's req/s, ${cpu.toFixed(2)}× bare's CPU per request (medians of per-round ratios)`,
    );
  }
if (ROUNDS > 0)
  for (const v of variants) {
    const p = results.get(v.name) ?? [];
    const d = results.get(DESIGN_FLOOR) ?? [];
    const cpu = median(p.map((x, i) => x.us / (d[i]?.us ?? Number.NaN)));
    console.log(
      `median: ${v.name} ${median(p.map((x) => x.us)).toFixed(1)} µs/req: ${cpu.toFixed(3)}× the design floor's CPU per request (per round: ${p.map((x, i) => (x.us / (d[i]?.us ?? Number.NaN)).toFixed(3)).join(", ")})`,
    );
  }
if (ROUNDS > 0 && baseline) {
  const p = results.get("Portcullis") ?? [];
  const base = results.get("Portcullis (baseline)") ?? [];
  const cpu = median(p.map((x, i) => x.us / (base[i]?.us ?? Number.NaN)));
  const ratios = p.map((x, i) => (x.us / (base[i]?.us ?? Number.NaN)).toFixed(3)).join(", ");
  console.log(
    `median: Portcullis ${median(p.map((x) => x.us)).toFixed(1)} µs/req, baseline ${median(base.map((x) => x.us)).toFixed(1)} µs/req: ${cpu.toFixed(3)}× the baseline's CPU per request (per round: ${ratios})`,
  );
}

// What each stage costs: one more run of the router under a CPU profile, and one under
// the sampled allocation profiler (bench/stage-costs.ts). Not part of the rounds above.
if (ROUNDS > 0 && !NO_STAGES) {
  const base = { port: router.port, connections: 64, hosts, cpu: LOAD_CPU, tmp };
  await seed();
  await runWrk({ ...base, seconds: 1 });
  await router.ask({ type: "cpu-start" });
  const profiled = await runWrk({ ...base, seconds: SECONDS });
  await router.ask({ type: "cpu-stop", file: join(tmp, "stages.cpuprofile") });
  const costs = stageCosts(JSON.parse(readFileSync(join(tmp, "stages.cpuprofile"), "utf8")) as CpuProfile, profiled.requests);
  await router.ask({ type: "alloc-start", survivors: false });
  const sampled = await runWrk({ ...base, seconds: SECONDS });
  await router.ask({ type: "alloc-stop", file: join(tmp, "stages.heapprofile") });
  const bytes = allocatedBytes(JSON.parse(readFileSync(join(tmp, "stages.heapprofile"), "utf8")) as HeapProfile);
  const floors = [DESIGN_FLOOR, "node:http floor"].map(
    (n) => `${n} ${median((results.get(n) ?? []).map((x) => x.us)).toFixed(1)}`,
  );
  console.log(`\nPortcullis per stage (a profiled extra run; floors, µs/req from the rounds: ${floors.join(", ")}):`);
  for (const line of formatStageCosts(
    costs,
    bytes / sampled.requests,
    median((results.get("Portcullis") ?? []).map((x) => x.us)),
  ))
    console.log(`  ${line}`);
}

if (RATE > 0 && PRELOAD > 0) {
  const others: HostSet = { prefix: "p", count: PRELOAD, domain: DOMAIN };
  await router.ask({ type: "seed", count: PRELOAD, prefix: "p", domain: DOMAIN, template: JSON.stringify(template) });
  let requests = 0;
  for (let pass = 0; pass < 3; pass++)
    requests += (await runWrk({ port: router.port, connections: 64, hosts: others, cpu: LOAD_CPU, tmp, seconds: 10 })).requests;
  await router.ask({ type: "unseed" });
  await router.ask({ type: "heap" });
  if (HEAP_SNAPSHOT !== "") await router.ask({ type: "heap-snapshot", file: resolve(`${HEAP_SNAPSHOT}.preload.heapsnapshot`) });
  console.log(`preload: ${requests} requests over ${PRELOAD.toLocaleString("en")} other tenants, then unseeded`);
}

if (RATE > 0) {
  const direct = await start("upstream.ts", TARGET_CPU, {});
  // The bare forwarder is the reference: what one more Node hop costs at this rate.
  for (const [name, port, before] of [
    ["direct upstream", direct.port, async () => {}],
    ["bare forwarder", bare.port, async () => {}],
    ["node:http floor", floor.port, async () => {}],
    ["design floor", design.port, async () => {}],
    ["Portcullis", router.port, seed],
  ] as const) {
    if (RATE_ONLY.length > 0 && !RATE_ONLY.some((t) => name.includes(t))) continue;
    await before();
    // Warm (JIT, connections, scripts) with a short closed-loop run first, then
    // RATE_WARMUP uncounted seconds at the rate.
    await runWrk({ port, connections: 64, hosts, cpu: LOAD_CPU, tmp, seconds: 2 });
    const profiling = ALLOC_PROFILE !== "" && port === router.port;
    const cpuProfiling = RATE_PROFILE !== "" && port === router.port;
    if (profiling) await router.ask({ type: "alloc-start", survivors: ALLOC_SURVIVORS });
    if (cpuProfiling) await router.ask({ type: "cpu-start" });
    const m0 = port === router.port ? await routerTimes(router.opsPort) : null;
    const r = await fixedRate(children, LOAD_CPU, { port, hosts, rate: RATE, seconds: SECONDS, warmup: RATE_WARMUP });
    if (profiling) await router.ask({ type: "alloc-stop", file: ALLOC_PROFILE });
    if (cpuProfiling) await router.ask({ type: "cpu-stop", file: RATE_PROFILE });
    if (port === router.port && HEAP_SNAPSHOT !== "")
      await router.ask({ type: "heap-snapshot", file: resolve(`${HEAP_SNAPSHOT}.rate.heapsnapshot`) });
    console.log(
      `fixed ${RATE}/s ${name.padEnd(16)} p50 ${r.p50ms.toFixed(3)} ms  p99 ${r.p99ms.toFixed(3)} ms${r.errors ? `  ERRORS ${r.errors}` : ""}`,
    );
    if (m0 !== null) {
      // Where the time goes, as the router measured it (warm-up included).
      const m1 = await routerTimes(router.opsPort);
      const share = (name: string) => shareUnderOneMs(m0, m1, name);
      console.log(
        `  under 1 ms, as the router measured: its own time ${share("router_added")}, the upstream exchange ${share("upstream")}`,
      );
    }
  }
}
// What the routers wrote to Redis (450,000 keys for 100,000 hosts) goes with the run.
for (const c of children) c.kill("SIGTERM");
await dropRedisPrefix(env.REDIS_URL, env.REDIS_PREFIX);
process.exit(0);
