/**
 * A control plane as its own OS process (`node control-plane/src/main.ts`, Node 24
 * from node_modules/.bin) on a given Postgres database, Redis and key prefix: for
 * tests of what must hold with several control planes, and when one of them dies.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { TEST_REDIS_URL } from "./env.ts";
import { SECRETS } from "./stack.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NODE = `${ROOT}node_modules/.bin/node`;

export interface ControlPlaneProcess {
  adminPort: number;
  opsPort: number;
  child: ChildProcess;
  /** An admin API call with the test token. */
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; json: () => any }>;
  /** The value of one metric series on the ops port, or null. */
  metric(series: string): Promise<number | null>;
  /** SIGTERM and wait for the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: a crash. */
  kill(): Promise<void>;
}

export async function spawnControlPlane(options: {
  databaseUrl: string;
  prefix: string;
  env?: Record<string, string>;
}): Promise<ControlPlaneProcess> {
  const child = spawn(NODE, [`${ROOT}control-plane/src/main.ts`], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "",
      ...SECRETS,
      PLATFORM_DOMAIN: "localhost",
      DATABASE_URL: options.databaseUrl,
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: options.prefix,
      ADMIN_PORT: "0",
      CONTROL_PLANE_OPS_PORT: "0",
      LOG_LEVEL: "silent",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const ports = await new Promise<{ adminPort: number; opsPort: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`control plane process did not start:\n${output}`)), 20_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      const admin = /control plane admin API on :(\d+)/.exec(output);
      const ops = /control plane ops \(\/metrics\) on :(\d+)/.exec(output);
      if (admin && ops) {
        clearTimeout(timer);
        resolve({ adminPort: Number(admin[1]), opsPort: Number(ops[1]) });
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`control plane process exited (${code}):\n${output}`));
    });
  });
  return {
    ...ports,
    child,
    async admin(method, path, body) {
      const res = await fetch(`http://127.0.0.1:${ports.adminPort}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${SECRETS.ADMIN_TOKEN}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, json: () => JSON.parse(text) };
    },
    async metric(series) {
      const res = await fetch(`http://127.0.0.1:${ports.opsPort}/metrics`);
      const line = (await res.text()).split("\n").find((l) => l.startsWith(`${series} `));
      return line === undefined ? null : Number(line.slice(series.length + 1));
    },
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      return exited;
    },
    async kill() {
      if (child.exitCode !== null) return;
      child.kill("SIGKILL");
      await exited;
    },
  };
}
