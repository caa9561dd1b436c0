/**
 * Load generators of the benchmark. One closed-loop generator for every target in
 * a run: wrk (pinned to one core with taskset when available) when installed, else
 * autocannon. And an open-loop fixed-rate client (wrk2-style: latency counted from
 * the time each request was due, so a stall is not hidden) for the added-latency
 * figure.
 */
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import autocannon from "autocannon";
import { Pool } from "undici";

export interface LoadResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  requests: number;
  /** Non-2xx answers and socket errors: a run with any is flagged. */
  errors: number;
}

/** Which hostnames a run cycles through (`<prefix><0000..count-1>.<domain>`), or one fixed host. */
export interface HostSet {
  prefix: string;
  count: number;
  domain: string;
  /** Extra request headers (the API-key path). */
  headers?: Record<string, string>;
}

export function hostName(set: HostSet, i: number): string {
  return set.count === 0 ? set.domain : `${set.prefix}${String(i).padStart(4, "0")}.${set.domain}`;
}

export function has(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

export interface LoadOptions {
  port: number;
  seconds: number;
  connections: number;
  hosts: HostSet;
  /** `taskset -c <cpu>` prefix, or null. */
  cpu: string | null;
  tmp: string;
}

function wrkScript(set: HostSet, tmp: string): string {
  const headers = Object.entries(set.headers ?? {})
    .map(([k, v]) => `[${JSON.stringify(k)}] = ${JSON.stringify(v)}`)
    .join(", ");
  const hostExpr =
    set.count === 0
      ? `hosts[1] = ${JSON.stringify(set.domain)}; n = 1`
      : `n = ${set.count}; for j = 0, n - 1 do hosts[j + 1] = string.format("%s%04d.%s", ${JSON.stringify(set.prefix)}, j, ${JSON.stringify(set.domain)}) end`;
  const lua = `
local hosts = {}
local n = 0
local i = 0
local headers = { ${headers} }
init = function(args)
  ${hostExpr}
end
request = function()
  i = i % n + 1
  headers["Host"] = hosts[i]
  return wrk.format("GET", "/bench", headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\nRESULT {"requests":%d,"duration_us":%d,"p50_us":%f,"p99_us":%f,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status, e.connect, e.read, e.write, e.timeout))
end
`;
  const file = join(tmp, `wrk-${set.prefix}-${set.count}-${Object.keys(set.headers ?? {}).length}.lua`);
  writeFileSync(file, lua);
  return file;
}

export function runWrk(o: LoadOptions): Promise<LoadResult> {
  const script = wrkScript(o.hosts, o.tmp);
  const args = ["-t1", `-c${o.connections}`, `-d${o.seconds}s`, "--timeout", "5s", "-s", script, `http://127.0.0.1:${o.port}/`];
  const [cmd, argv] = o.cpu ? ["taskset", ["-c", o.cpu, "wrk", ...args]] : ["wrk", args];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv as string[], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", () => {
      const line = out.split("\n").find((l) => l.startsWith("RESULT "));
      if (!line) return reject(new Error(`wrk gave no result:\n${out}`));
      const r = JSON.parse(line.slice(7)) as Record<string, number>;
      const n = r.requests as number;
      resolve({
        rps: n / ((r.duration_us as number) / 1e6),
        p50ms: (r.p50_us as number) / 1000,
        p99ms: (r.p99_us as number) / 1000,
        requests: n,
        errors: (r.status as number) + (r.connect as number) + (r.read as number) + (r.write as number) + (r.timeout as number),
      });
    });
  });
}

export async function runAutocannon(o: LoadOptions): Promise<LoadResult> {
  let i = 0;
  const set = o.hosts;
  const n = Math.max(1, set.count);
  const result = await autocannon({
    url: `http://127.0.0.1:${o.port}/bench`,
    connections: o.connections,
    duration: o.seconds,
    requests: [
      {
        setupRequest: (req: autocannon.Request) => {
          i = (i + 1) % n;
          return { ...req, headers: { ...(set.headers ?? {}), host: hostName(set, i) } };
        },
      },
    ],
  });
  return {
    rps: result.requests.total / o.seconds,
    p50ms: result.latency.p50,
    p99ms: result.latency.p99,
    requests: result.requests.total,
    errors: result.non2xx + result.errors + result.timeouts,
  };
}

export interface RateResult {
  rate: number;
  sent: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export function summarize(samples: number[]): { p50: number; p99: number; max: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1] ?? Number.NaN };
}

/**
 * Open loop at a fixed rate: request k is sent at start + k/rate whatever happened
 * before (a slow answer does not delay the next request, as in wrk2). Latency runs
 * from the moment each request is sent: the client's own timer jitter (it sleeps
 * between sends rather than spinning a core the upstream needs) is not counted. The
 * first second (by default) runs at the same rate but is not counted: it opens the pool's
 * connections and warms the client's own code, costs of the client, not the target.
 */
const WARMUP_SECONDS = 1;

export async function runFixedRate(
  port: number,
  set: HostSet,
  rate: number,
  seconds: number,
  warmupSeconds = WARMUP_SECONDS,
): Promise<RateResult> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 64, pipelining: 1 });
  const warmup = Math.round(rate * warmupSeconds);
  const total = warmup + Math.round(rate * seconds);
  const latencies: number[] = [];
  let errors = 0;
  let sent = 0;
  const start = performance.now() + 50;
  const n = Math.max(1, set.count);
  await new Promise<void>((resolve) => {
    let completed = 0;
    const fire = (k: number) => {
      const sentAt = performance.now();
      pool
        .request({ path: "/bench", method: "GET", headers: { ...(set.headers ?? {}), host: hostName(set, k % n) } })
        .then(async (res) => {
          await res.body.dump();
          if (k < warmup) return;
          if (res.statusCode !== 200) errors++;
          latencies.push(performance.now() - sentAt);
        })
        .catch(() => {
          if (k >= warmup) errors++;
        })
        .finally(() => {
          if (++completed === total) resolve();
        });
    };
    const tick = () => {
      const now = performance.now();
      while (sent < total && start + (sent * 1000) / rate <= now) {
        fire(sent);
        sent++;
      }
      if (sent < total) setTimeout(tick, Math.max(0, start + (sent * 1000) / rate - performance.now()));
    };
    setTimeout(tick, 50);
  });
  await pool.close();
  const s = summarize(latencies);
  return { rate, sent: sent - warmup, p50ms: s.p50, p99ms: s.p99, errors };
}
