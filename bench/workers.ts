/**
 * `npm run bench:workers`: the multi-process mode (ROUTER_WORKERS, router/src/cluster.ts)
 * measured on its own. The router runs as an operator runs it (`node
 * router/src/main.ts`), once with one process and once with `--workers N` worker
 * processes (default: one per core), alternating, 3 rounds of 5 s; wrk with 64
 * connections over 1,000 hostnames; the tenants read from Redis, written there as the
 * control plane writes them (no key service: every lookup is answered by Redis, then
 * from memory); limits far above the load, audit to the durable stream. Nothing is
 * pinned: the workers need every core, which they share with wrk, the upstream and
 * Redis, so on a small machine the ratio is a lower bound of what the mode gives a
 * router with cores of its own.
 *
 *   npm run bench:workers
 *   npm run bench:workers -- --workers 4 --rounds 5 --seconds 4
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CACHE, RedisStore } from "@portcullis/shared";
import { cpuSeconds, startNode } from "./processes.ts";
import { has, type HostSet, runWrk } from "./load.ts";
import { benchTenant } from "./tenant.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const option = (name: string, fallback: string) => {
  const i = argv.indexOf(name);
  return i === -1 ? fallback : (argv[i + 1] ?? fallback);
};
const WORKERS = Number(option("--workers", String(availableParallelism())));
const ROUNDS = Number(option("--rounds", "3"));
const SECONDS = Number(option("--seconds", "5"));
const HOSTS = 1_000;
const DOMAIN = "bench.test";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PREFIX = `pc-workers-${randomBytes(4).toString("hex")}:`;

if (!has("wrk")) {
  console.error("bench:workers needs wrk (apt-get install -y wrk)");
  process.exit(2);
}
if (!Number.isInteger(WORKERS) || WORKERS < 2) {
  console.error("bench:workers compares one process with --workers N, N ≥ 2");
  process.exit(2);
}

const children: ChildProcess[] = [];
const tmp = mkdtempSync(join(tmpdir(), "pc-workers-"));
const store = new RedisStore({ url: REDIS_URL, prefix: PREFIX });
await store.ready();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

const upstream = await startNode(children, "upstream.ts", null, {});
const origin = `http://127.0.0.1:${upstream.port}`;

// The tenants as the control plane writes them into Redis.
for (let i = 0; i < HOSTS; i++) {
  const slug = `t${String(i).padStart(4, "0")}`;
  const id = `ten_workers${i}`;
  const tenant = benchTenant(origin, id, slug);

  await store.setIfNewer(CACHE.tenant.key(id), JSON.stringify({ v: 1, tenant }), 1, 3_600_000, "authoritative");
  await store.setIfNewer(
    CACHE.host.key(`${slug}.${DOMAIN}`),
    JSON.stringify({ v: 1, tenantId: id }),
    1,
    3_600_000,
    "authoritative",
  );
}

/** `node router/src/main.ts` with `workers` processes; resolves with its public port. */
function startRouter(workers: number): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(process.execPath, [join(root, "router/src/main.ts")], {
    env: {
      PATH: process.env.PATH ?? "",
      ROUTER_WORKERS: String(workers),
      ROUTER_PORT: "0",
      ROUTER_OPS_PORT: "0",
      ROUTER_HOST: "127.0.0.1",
      REDIS_URL,
      REDIS_PREFIX: PREFIX,
      PLATFORM_DOMAIN: DOMAIN,
      // Nothing listens here: every lookup is answered from Redis.
      KEY_SERVICE_URL: "http://127.0.0.1:9",
      KEY_SERVICE_TOKEN: randomBytes(16).toString("hex"),
      CONTEXT_SIGNING_SECRET: randomBytes(16).toString("hex"),
      SESSION_SECRET: randomBytes(16).toString("hex"),
      LOG_LEVEL: "error",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /router listening on :(\d+)/.exec(out);
      if (m) resolve({ port: Number(m[1]), child });
    });
    child.once("exit", (code) => reject(new Error(`router exited (${code}):\n${out}`)));
  });
}

const hosts: HostSet = { prefix: "t", count: HOSTS, domain: DOMAIN };
const targets = [
  { name: "1 process", proc: await startRouter(1) },
  { name: `${WORKERS} workers`, proc: await startRouter(WORKERS) },
];
for (const t of targets) await runWrk({ port: t.proc.port, connections: 64, hosts, cpu: null, tmp, seconds: 3 });

const rps = new Map<string, number[]>();
for (let round = 0; round < ROUNDS; round++) {
  for (const t of round % 2 === 0 ? targets : [...targets].reverse()) {
    const cpu0 = cpuSeconds(t.proc.child.pid);
    const r = await runWrk({ port: t.proc.port, connections: 64, hosts, cpu: null, tmp, seconds: SECONDS });
    const us = ((cpuSeconds(t.proc.child.pid) - cpu0) * 1e6) / r.requests;
    rps.set(t.name, [...(rps.get(t.name) ?? []), r.rps]);
    console.log(
      `${t.name.padEnd(12)} ${Math.round(r.rps).toString().padStart(7)} req/s  p99 ${r.p99ms.toFixed(2)} ms  ${us.toFixed(1)} µs CPU/req (all processes)${r.errors ? `  ERRORS ${r.errors}` : ""}`,
    );
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const one = rps.get("1 process") ?? [];
const many = rps.get(`${WORKERS} workers`) ?? [];
const ratios = many.map((x, i) => x / (one[i] ?? Number.NaN));
console.log(
  `median: 1 process ${Math.round(median(one))} req/s, ${WORKERS} workers ${Math.round(median(many))} req/s: ${median(ratios).toFixed(2)}× (median of per-round ratios; ${availableParallelism()} cores shared with wrk, the upstream and Redis)`,
);

for (const t of targets) t.proc.child.kill("SIGTERM");
await Promise.all(targets.map((t) => new Promise((r) => t.proc.child.once("exit", r))));
await store.del(
  ...Array.from({ length: HOSTS }, (_, i) => CACHE.tenant.key(`ten_workers${i}`)),
  ...Array.from({ length: HOSTS }, (_, i) => CACHE.host.key(`t${String(i).padStart(4, "0")}.${DOMAIN}`)),
);
await store.close();
process.exit(0);
