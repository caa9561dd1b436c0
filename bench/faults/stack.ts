/**
 * The stack `npm run faults` runs, as in production: every service its own OS process
 * started with its own command (`node router/src/main.ts` twice, the control plane,
 * the key service), one Redis of its own (test/helpers/redis-server.ts), a throw-away
 * Postgres database reached through a TCP relay the harness can cut or black-hole
 * (test/helpers/tcp-proxy.ts). Each process is watched: its output goes to a log file,
 * `[faults-monitor]` lines (monitor.ts) and exits the harness did not ask for are
 * counted with their time, and its RSS can be read at any moment.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, readFileSync, type WriteStream } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { freePort, RedisServer } from "../../test/helpers/redis-server.ts";
import { TcpProxy } from "../../test/helpers/tcp-proxy.ts";

export const ROOT = join(import.meta.dirname, "..", "..");
const MONITOR = join(import.meta.dirname, "monitor.ts");

export interface ProcessEvent {
  t: number;
  service: string;
  kind: "unhandledRejection" | "uncaughtException" | "fatal" | "crash" | "warning";
  text: string;
}

/** Resident set size of a process in MiB (Linux /proc); NaN when it is gone. */
export function rssMiB(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

export class Service {
  readonly name: string;
  readonly #script: string;
  readonly #env: Record<string, string>;
  readonly #ready: RegExp;
  readonly #log: WriteStream;
  readonly #events: ProcessEvent[];
  child: ChildProcess | null = null;
  /** Set while the harness itself stops or kills the process: that exit is no crash. */
  #expectExit = false;
  #stopped = false;
  starts = 0;
  lastExit: { code: number | null; signal: string | null; t: number } | null = null;

  constructor(name: string, script: string, env: Record<string, string>, ready: RegExp, logDir: string, events: ProcessEvent[]) {
    this.name = name;
    this.#script = script;
    this.#env = env;
    this.#ready = ready;
    this.#log = createWriteStream(join(logDir, `${name}.log`), { flags: "a" });
    this.#events = events;
  }

  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  get running(): boolean {
    return this.pid !== undefined;
  }

  rss(): number {
    return rssMiB(this.pid);
  }

  /** Starts the process; resolves once its ready line is printed. */
  start(timeoutMs = 30_000): Promise<void> {
    this.#expectExit = false;
    this.starts++;
    const child = spawn(process.execPath, ["--import", MONITOR, join(ROOT, this.#script)], {
      cwd: ROOT,
      env: this.#env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    this.#log.write(`\n=== ${new Date().toISOString()} start #${this.starts} pid ${child.pid}\n`);
    let pending = "";
    let seen = "";
    let resolveReady: () => void = () => {};
    const ready = new Promise<void>((resolve) => (resolveReady = resolve));
    const onData = (chunk: Buffer) => {
      const text = chunk.toString("utf8");
      this.#log.write(text);
      if (seen.length < 20_000) seen += text;
      if (this.#ready.test(seen)) resolveReady();
      pending += text;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) this.#scan(line);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    const exited = new Promise<never>((_, reject) =>
      child.once("exit", (code, signal) => {
        this.lastExit = { code, signal, t: Date.now() };
        this.#log.write(`=== ${new Date().toISOString()} exit code ${code} signal ${signal}\n`);
        if (!this.#expectExit && !this.#stopped)
          this.#events.push({
            t: Date.now(),
            service: this.name,
            kind: "crash",
            text: `exited unasked (code ${code}, signal ${signal})`,
          });
        reject(new Error(`${this.name} exited (code ${code}, signal ${signal}) before it was ready:\n${seen.slice(-2_000)}`));
      }),
    );
    exited.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} not ready in ${timeoutMs} ms:\n${seen.slice(-2_000)}`)), timeoutMs);
    });
    return Promise.race([ready, exited, timeout]).finally(() => clearTimeout(timer));
  }

  #scan(line: string): void {
    const monitor = /\[faults-monitor\] (unhandledRejection|uncaughtException|warning): (.*)/.exec(line);
    if (monitor) {
      this.#events.push({
        t: Date.now(),
        service: this.name,
        kind: monitor[1] as ProcessEvent["kind"],
        text: (monitor[2] ?? "").slice(0, 300),
      });
      return;
    }
    if (line.includes('"level":60') || line.startsWith("FATAL ERROR"))
      this.#events.push({ t: Date.now(), service: this.name, kind: "fatal", text: line.slice(0, 300) });
  }

  /** Waits for the exit of a process told to go; resolves with its exit code. */
  #waitExit(): Promise<number | null> {
    const child = this.child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child?.exitCode ?? null);
    return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  }

  /** SIGTERM and wait for the exit code (a drain). */
  async terminate(): Promise<number | null> {
    this.#expectExit = true;
    const exited = this.#waitExit();
    this.child?.kill("SIGTERM");
    return exited;
  }

  /** SIGKILL and wait (a crash the harness causes). */
  async kill(): Promise<void> {
    this.#expectExit = true;
    const exited = this.#waitExit();
    this.resume();
    this.child?.kill("SIGKILL");
    await exited;
  }

  /** SIGSTOP: the process keeps its connections and answers nothing (a black hole). */
  pause(): void {
    if (this.pid !== undefined) process.kill(this.pid, "SIGSTOP");
  }

  resume(): void {
    if (this.pid !== undefined) process.kill(this.pid, "SIGCONT");
  }

  /** At the end of the run: every exit from now on is expected. */
  async shutdown(): Promise<void> {
    this.#stopped = true;
    if (this.running) {
      this.resume();
      const exited = this.#waitExit();
      this.child?.kill("SIGTERM");
      const timer = setTimeout(() => this.child?.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await new Promise<void>((r) => this.#log.end(() => r()));
  }

  /** Synchronous last resort (process exit handler). */
  killNow(): void {
    this.#stopped = true;
    if (this.running) {
      try {
        this.child?.kill("SIGCONT");
        this.child?.kill("SIGKILL");
      } catch {}
    }
  }
}

export interface Secrets {
  ADMIN_TOKEN: string;
  KEY_SERVICE_TOKEN: string;
  CONTEXT_SIGNING_SECRET: string;
  SESSION_SECRET: string;
}

export function newSecrets(): Secrets {
  const s = () => randomBytes(24).toString("hex");
  return { ADMIN_TOKEN: s(), KEY_SERVICE_TOKEN: s(), CONTEXT_SIGNING_SECRET: s(), SESSION_SECRET: s() };
}

/** A throw-away database on the local Postgres: created, migrated with `npm run migrate`'s script, dropped. */
export class ThrowawayDatabase {
  readonly name = `pc_faults_${randomBytes(5).toString("hex")}`;
  readonly #server: string;
  #created = false;
  sql: postgres.Sql | null = null;

  constructor(serverUrl: string) {
    this.#server = serverUrl;
  }

  url(port?: number): string {
    const u = new URL(this.#server);
    if (port !== undefined) {
      u.hostname = "127.0.0.1";
      u.port = String(port);
    }
    u.pathname = `/${this.name}`;
    return u.toString();
  }

  async create(logDir: string): Promise<void> {
    const admin = postgres(this.#server, { max: 1, onnotice: () => {}, connect_timeout: 5 });
    try {
      await admin.unsafe(`create database ${this.name}`);
      this.#created = true;
    } finally {
      await admin.end({ timeout: 2 });
    }
    const log = createWriteStream(join(logDir, "migrate.log"));
    const child = spawn(process.execPath, [join(ROOT, "control-plane/src/db/migrate-cli.ts")], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", DATABASE_URL: this.url() },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    const code = await new Promise<number | null>((r) => child.once("exit", r));
    if (code !== 0) throw new Error(`migrations failed (exit ${code}); see ${join(logDir, "migrate.log")}`);
    // The harness's own connection: straight to Postgres, never through the relay.
    this.sql = postgres(this.url(), { max: 2, onnotice: () => {}, connect_timeout: 5 });
  }

  async drop(): Promise<void> {
    await this.sql?.end({ timeout: 2 }).catch(() => {});
    this.sql = null;
    if (!this.#created) return;
    const admin = postgres(this.#server, { max: 1, onnotice: () => {}, connect_timeout: 5 });
    try {
      await admin.unsafe(`drop database if exists ${this.name} with (force)`);
      this.#created = false;
    } finally {
      await admin.end({ timeout: 2 });
    }
  }
}

export interface Ports {
  routers: { port: number; opsPort: number }[];
  admin: number;
  adminOps: number;
  keyService: number;
  keyServiceOps: number;
}

export async function allocatePorts(routers: number): Promise<Ports> {
  const taken = new Set<number>();
  const next = async () => {
    for (;;) {
      const p = await freePort();
      if (!taken.has(p)) {
        taken.add(p);
        return p;
      }
    }
  };
  const rs: Ports["routers"] = [];
  for (let i = 0; i < routers; i++) rs.push({ port: await next(), opsPort: await next() });
  return { routers: rs, admin: await next(), adminOps: await next(), keyService: await next(), keyServiceOps: await next() };
}

export { RedisServer, TcpProxy };
