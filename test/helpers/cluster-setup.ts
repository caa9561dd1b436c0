/**
 * Global setup of the `cluster` test project (vitest.config.ts): one Redis Cluster of
 * three masters for its files, named to them as `redisClusterNodes` (test/helpers/env.ts).
 */
import type { TestProject } from "vitest/node";
import { startRedisCluster } from "./redis-cluster.ts";

declare module "vitest" {
  export interface ProvidedContext {
    redisClusterNodes: string;
  }
}

export default async function setup(project: TestProject) {
  const cluster = await startRedisCluster();
  project.provide("redisClusterNodes", cluster.list);
  return () => cluster.close();
}
