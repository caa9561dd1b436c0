/**
 * A router as its own OS process (`node router/src/main.ts`, Node 24 from
 * node_modules/.bin), pointed at a TestStack's key service, Redis and key prefix:
 * for tests of what must hold across router instances that share only Redis.
 */
import type { ChildProcess } from "node:child_process";
import { testRedisEnv } from "./env.ts";
import { readMetric, spawnService } from "./service-process.ts";
import type { TestStack } from "./stack.ts";

export interface RouterProcess {
  port: number;
  opsPort: number;
  child: ChildProcess;
  /** SIGTERM (drain) and wait for the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: a crash. */
  kill(): Promise<void>;
  /** The value of one metric series on its ops port, or null. */
  metric(series: string): Promise<number | null>;
}

/** `env` adds to or replaces the defaults below; an empty value removes a setting. */
export async function spawnRouter(stack: TestStack, env: Record<string, string> = {}): Promise<RouterProcess> {
  const service = await spawnService(
    "router",
    "router/src/main.ts",
    {
      ...stack.env,
      ROUTER_PORT: "0",
      ROUTER_OPS_PORT: "0",
      ROUTER_HOST: "127.0.0.1",
      ...testRedisEnv(),
      REDIS_PREFIX: stack.prefix,
      KEY_SERVICE_URL: `http://127.0.0.1:${stack.keyServicePort}`,
      LOG_LEVEL: "silent",
      ...env,
    },
    (output) => {
      const m = /router listening on :(\d+) \(ops :(\d+)\)/.exec(output);
      return m ? { port: Number(m[1]), opsPort: Number(m[2]) } : null;
    },
  );
  const { port, opsPort } = service.ports;
  return {
    port,
    opsPort,
    child: service.child,
    stop: service.stop,
    kill: service.kill,
    metric: (series) => readMetric(opsPort, series),
  };
}
