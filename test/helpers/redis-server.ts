/**
 * A Redis server of one's own (`redis-server` on a free loopback port, no
 * persistence), for what cannot be done to the shared one: pause it (SIGSTOP: every
 * connection stays open and nothing answers, a black hole), kill it, restart it empty
 * on the same port, or make it slow (DEBUG SLEEP). Used by the reliability tests and
 * by `npm run faults`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

export class RedisServer {
  readonly port: number;
  readonly #args: string[];
  #child: ChildProcess | null = null;
  /**
   * Its working directory, of its own and new at each start: a replica saves the
   * master's snapshot there (dump.rdb), which a server started in the same directory
   * would load — keys, and on a cluster node the slots they hash to.
   */
  #dir: string | null = null;
  #paused = false;

  private constructor(port: number, args: string[]) {
    this.port = port;
    this.#args = args;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** `args`: more redis-server options (`--replicaof`, `--sentinel` with a config file first). */
  static async start(port?: number, args: string[] = []): Promise<RedisServer> {
    const server = new RedisServer(port ?? (await freePort()), args);
    await server.#spawn();
    return server;
  }

  async #spawn(): Promise<void> {
    const sentinel = this.#args.includes("--sentinel");
    this.#dir = mkdtempSync(join(tmpdir(), "pc-redis-"));
    const child = spawn(
      "redis-server",
      [
        ...this.#args,
        "--dir",
        this.#dir,
        "--port",
        String(this.port),
        "--bind",
        "127.0.0.1",
        ...(sentinel ? [] : ["--save", "", "--appendonly", "no", "--enable-debug-command", "local"]),
        "--loglevel",
        "warning",
      ],
      { stdio: "ignore" },
    );
    this.#child = child;
    child.once("exit", () => {
      if (this.#child === child) this.#child = null;
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (await this.ping()) return;
      if (Date.now() > deadline) throw new Error(`redis-server on :${this.port} did not start`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** True when it answers PING within 200 ms. */
  async ping(): Promise<boolean> {
    const client = new Redis(this.url, {
      lazyConnect: true,
      connectTimeout: 200,
      commandTimeout: 200,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => null,
    });
    client.on("error", () => {});
    try {
      await client.connect();
      return (await client.ping()) === "PONG";
    } catch {
      return false;
    } finally {
      client.disconnect();
    }
  }

  /** SIGSTOP: connections stay open, nothing is answered (a black-holed Redis). */
  pause(): void {
    if (this.#child?.pid === undefined || this.#paused) return;
    process.kill(this.#child.pid, "SIGSTOP");
    this.#paused = true;
  }

  resume(): void {
    if (this.#child?.pid === undefined || !this.#paused) return;
    process.kill(this.#child.pid, "SIGCONT");
    this.#paused = false;
  }

  /** SIGKILL, and wait for the exit: connections are refused from now on. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child !== null) {
      this.resume();
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGKILL");
      await exited;
      this.#child = null;
    }
    if (this.#dir !== null) rmSync(this.#dir, { recursive: true, force: true });
    this.#dir = null;
  }

  /** Start again on the same port, empty (no persistence). */
  async restart(): Promise<void> {
    await this.kill();
    await this.#spawn();
  }

  /** Every command waits `ms` behind a DEBUG SLEEP (Redis is single-threaded). */
  async sleep(ms: number): Promise<void> {
    const client = new Redis(this.url, { maxRetriesPerRequest: 0 });
    client.on("error", () => {});
    try {
      await client.call("DEBUG", "SLEEP", String(ms / 1000));
    } finally {
      client.disconnect();
    }
  }

  async stop(): Promise<void> {
    await this.kill();
  }
}
