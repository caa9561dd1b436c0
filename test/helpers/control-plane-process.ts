/**
 * A control plane as its own OS process (`node control-plane/src/main.ts`, Node 24
 * from node_modules/.bin) on a given Postgres database, Redis and key prefix: for
 * tests of what must hold with several control planes, and when one of them dies.
 */
import type { ChildProcess } from "node:child_process";
import { testRedisEnv } from "./env.ts";
import { readMetric, spawnService } from "./service-process.ts";
import { SECRETS } from "./stack.ts";

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
  const service = await spawnService(
    "control plane",
    "control-plane/src/main.ts",
    {
      ...SECRETS,
      PLATFORM_DOMAIN: "localhost",
      DATABASE_URL: options.databaseUrl,
      ...testRedisEnv(),
      REDIS_PREFIX: options.prefix,
      ADMIN_PORT: "0",
      CONTROL_PLANE_OPS_PORT: "0",
      LOG_LEVEL: "silent",
      ...options.env,
    },
    (output) => {
      const admin = /control plane admin API on :(\d+)/.exec(output);
      const ops = /control plane ops \(\/metrics\) on :(\d+)/.exec(output);
      return admin && ops ? { adminPort: Number(admin[1]), opsPort: Number(ops[1]) } : null;
    },
  );
  const { adminPort, opsPort } = service.ports;
  return {
    adminPort,
    opsPort,
    child: service.child,
    stop: service.stop,
    kill: service.kill,
    async admin(method, path, body) {
      const res = await fetch(`http://127.0.0.1:${adminPort}${path}`, {
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
    metric: (series) => readMetric(opsPort, series),
  };
}
