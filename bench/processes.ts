/**
 * The benchmark's child processes: Node processes from bench/procs pinned to a core
 * with `taskset` when given one, answering on their IPC channel, and the CPU time a
 * process and its descendants have used (Linux /proc), which the harnesses divide by
 * the requests served.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import type { HostSet, RateResult } from "./load.ts";

const procs = join(dirname(fileURLToPath(import.meta.url)), "procs");

/** `cmd args` run on `cpu` when one is given. */
export function pinned(cpu: string | null, cmd: string, args: string[]): [string, string[]] {
  return cpu ? ["taskset", ["-c", cpu, cmd, ...args]] : [cmd, args];
}

export interface NodeProc {
  port: number;
  opsPort: number;
  child: ChildProcess;
  /** Sends a command; resolves with the process's answer. */
  ask(message: Record<string, unknown>): Promise<unknown>;
}

/** Starts `bench/procs/<file>` with its settings; resolves once it reports ready. */
export function startNode(
  children: ChildProcess[],
  file: string,
  cpu: string | null,
  options: unknown,
  nodeArgs: string[] = [],
): Promise<NodeProc> {
  const [cmd, args] = pinned(cpu, process.execPath, [
    ...nodeArgs,
    isAbsolute(file) ? file : join(procs, file),
    JSON.stringify(options),
  ]);
  const child = spawn(cmd, args, { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  children.push(child);
  let next = 0;
  const waiting = new Map<number, (v: unknown) => void>();
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`${file} exited (${code})`)));
    child.on("message", (raw) => {
      const m = raw as { type: string; port?: number; opsPort?: number; id?: number; answer?: unknown };
      if (m.type === "ready")
        resolve({
          port: m.port as number,
          opsPort: m.opsPort ?? 0,
          child,
          ask: (message) =>
            new Promise((r) => {
              const id = next++;
              waiting.set(id, r);
              child.send({ ...message, id });
            }),
        });
      else if (m.type === "answer") waiting.get(m.id as number)?.(m.answer);
    });
  });
}

/** The open-loop fixed-rate client (bench/procs/fixed-rate.ts) in a process of its own on `cpu`. */
export function fixedRate(
  children: ChildProcess[],
  cpu: string | null,
  settings: { port: number; hosts: HostSet; rate: number; seconds: number; warmup?: number },
): Promise<RateResult> {
  const [cmd, args] = pinned(cpu, process.execPath, [join(procs, "fixed-rate.ts"), JSON.stringify(settings)]);
  const child = spawn(cmd, args, { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`fixed-rate client exited (${code})`)));
    child.on("message", (m) => resolve((m as { result: RateResult }).result));
  });
}

const CLOCK_TICKS = 100;

/** CPU seconds (user + system) used so far by a process and its descendants; NaN when unknown. */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    let ticks = Number(fields[11]) + Number(fields[12]);
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const kids = readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim();
      if (kids !== "") for (const kid of kids.split(" ")) ticks += cpuSeconds(Number(kid)) * CLOCK_TICKS;
    }
    return ticks / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

/** Deletes every key under `prefix` on that Redis: what a benchmark run wrote there. */
export async function dropRedisPrefix(url: string, prefix: string): Promise<void> {
  const r = new Redis(url);
  let cursor = "0";
  do {
    const [next, keys] = await r.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    if (keys.length > 0) await r.unlink(...keys);
    cursor = next;
  } while (cursor !== "0");
  r.disconnect();
}

/** The router's own time and upstream exchange histograms (`<name>/all`, `<name>/under` 1 ms). */
export async function routerTimes(opsPort: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^portcullis_(router_added|upstream)_seconds_(bucket\{le="0.001"\}|count) (\d+)/gm))
    out[`${m[1]}/${m[2]?.startsWith("bucket") ? "under" : "all"}`] = Number(m[3]);
  return out;
}

/** The share of requests under 1 ms between two readings of `routerTimes`, for one histogram. */
export function shareUnderOneMs(before: Record<string, number>, after: Record<string, number>, name: string): string {
  const under = (after[`${name}/under`] ?? 0) - (before[`${name}/under`] ?? 0);
  const all = (after[`${name}/all`] ?? 0) - (before[`${name}/all`] ?? 0);
  return `${((100 * under) / all).toFixed(2)} %`;
}
