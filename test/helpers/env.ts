/** Where the test suite finds the real Postgres and Redis (CI starts them; see .ci/run). */
import { inject } from "vitest";
import { parseHostPorts, type RedisConnection } from "@portcullis/shared";
import "./cluster-setup.ts";

export const TEST_POSTGRES_URL = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
/**
 * Set (`host:port,…`) for the suites run against a Redis Cluster (the `cluster` project
 * of vitest.config.ts starts one): stores, routers and control planes made by the
 * helpers then use it instead of TEST_REDIS_URL.
 */
export const TEST_REDIS_CLUSTER_NODES = process.env.TEST_REDIS_CLUSTER_NODES || providedClusterNodes();

function providedClusterNodes(): string {
  try {
    return inject("redisClusterNodes") ?? "";
  } catch {
    // Outside a test run (a benchmark using the helpers): none.
    return "";
  }
}

/** The test Redis as a store connection. */
export function testRedisConnection(): RedisConnection {
  return TEST_REDIS_CLUSTER_NODES ? { clusterNodes: parseHostPorts(TEST_REDIS_CLUSTER_NODES) } : { url: TEST_REDIS_URL };
}

/** The test Redis as the settings of a service process (an empty value unsets one). */
export function testRedisEnv(): Record<string, string> {
  return TEST_REDIS_CLUSTER_NODES
    ? { REDIS_URL: "", REDIS_CLUSTER_NODES: TEST_REDIS_CLUSTER_NODES }
    : { REDIS_URL: TEST_REDIS_URL };
}
