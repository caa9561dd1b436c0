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

/**
 * Requests through several router processes against one tenant's rate limit, decided
 * through the shared store alone: a store error in the last second keeps a router's
 * limiter local (each router enforcing the whole limit), so a sample during which any
 * router decided locally is taken again, on a tenant of its own, after a pause.
 * `status(port, host)` sends one request. Null when no sample was clean.
 */
export async function sharedLimitSample(
  stack: TestStack,
  routers: readonly RouterProcess[],
  status: (port: number, host: string) => Promise<number>,
  options: { slug: string; requestsPerSecond: number; burst: number; requests: number },
): Promise<{ passed: number; refused: number; seconds: number } | null> {
  const local = async () => {
    const each = await Promise.all(routers.map((r) => r.metric("portcullis_limiter_local_decisions_total")));
    return each.reduce((a: number, b) => a + (b ?? 0), 0);
  };
  for (let attempt = 0; attempt < 5; attempt++) {
    const slug = `${options.slug}-${attempt}`;
    const t = await stack.tenant(slug);
    const limits = { requestsPerSecond: options.requestsPerSecond, burst: options.burst };
    const patched = await stack.admin("PATCH", `/v1/tenants/${slug}`, { limits });
    if (patched.status !== 200) throw new Error(`limits of ${slug}: ${patched.status}`);
    await stack.cp.publisher.flush();
    const before = await local();
    const started = performance.now();
    const statuses: number[] = [];
    for (let i = 0; i < options.requests; i++) statuses.push(await status(routers[i % routers.length]!.port, t.host));
    const seconds = (performance.now() - started) / 1000;
    if ((await local()) !== before) {
      await new Promise((r) => setTimeout(r, 1_200));
      continue;
    }
    return { passed: statuses.filter((s) => s === 200).length, refused: statuses.filter((s) => s === 429).length, seconds };
  }
  return null;
}
