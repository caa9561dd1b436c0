import { configDefaults, defineConfig } from "vitest/config";

/**
 * The suites that must hold on a Redis Cluster as on one Redis (routing, keys, limits,
 * usage and the audit trail): run a second time, in the `cluster` project, against a
 * cluster of three masters of their own (test/helpers/cluster-setup.ts).
 */
const ON_A_CLUSTER = [
  "test/e2e/routing.test.ts",
  "test/e2e/keys.test.ts",
  "test/e2e/limits.test.ts",
  "test/e2e/key-limits.test.ts",
  "test/e2e/sessions.test.ts",
  "test/reliability/store.test.ts",
  "test/reliability/limits-store.test.ts",
  "test/reliability/key-limits-redis.test.ts",
  "test/reliability/four-routers.test.ts",
  "test/reliability/usage-exactly-once.test.ts",
  "test/reliability/audit-stream.test.ts",
  "test/audit/trail.test.ts",
  "test/security/credentials.test.ts",
];

export default defineConfig({
  test: {
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ["default"],
    projects: [
      {
        extends: true,
        test: {
          name: "redis",
          include: [
            "shared/src/**/*.test.ts",
            "router/src/**/*.test.ts",
            "control-plane/src/**/*.test.ts",
            "sdk/src/**/*.test.ts",
            "test/**/*.test.ts",
          ],
          // Needs the cluster of the project below.
          exclude: [...configDefaults.exclude, "test/reliability/redis-cluster.test.ts"],
        },
      },
      {
        extends: true,
        test: {
          name: "cluster",
          include: [...ON_A_CLUSTER, "test/reliability/redis-cluster.test.ts"],
          globalSetup: ["test/helpers/cluster-setup.ts"],
        },
      },
    ],
  },
});
