/**
 * A Redis Cluster of one's own: three masters (`redis-server --cluster-enabled yes` on
 * free loopback ports, slots spread by `redis-cli --cluster create`), no replicas, no
 * persistence. For the suites that must hold on a cluster as on one Redis.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { freePort, RedisServer } from "./redis-server.ts";

const run = promisify(execFile);

export interface RedisClusterDeployment {
  masters: RedisServer[];
  /** `host:port,…` as REDIS_CLUSTER_NODES takes it. */
  list: string;
  close(): Promise<void>;
}

export async function startRedisCluster(masters = 3): Promise<RedisClusterDeployment> {
  const dir = mkdtempSync(join(tmpdir(), "pc-cluster-"));
  const servers: RedisServer[] = [];
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      servers.push(
        await RedisServer.start(port, [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          join(dir, `nodes-${port}.conf`),
          "--cluster-node-timeout",
          "2000",
        ]),
      );
    }
    const addresses = servers.map((s) => `127.0.0.1:${s.port}`);
    await run("redis-cli", ["--cluster", "create", ...addresses, "--cluster-yes"], { timeout: 30_000 });
    // Every node agrees that every slot is served before anything is written.
    const deadline = Date.now() + 20_000;
    for (const s of servers) {
      for (;;) {
        const client = new Redis(s.url, { maxRetriesPerRequest: 0 });
        const info = await client.cluster("INFO").finally(() => client.disconnect());
        if (String(info).includes("cluster_state:ok")) break;
        if (Date.now() > deadline) throw new Error(`cluster node :${s.port} not ready`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (error) {
    for (const s of servers) await s.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    masters: servers,
    list: servers.map((s) => `127.0.0.1:${s.port}`).join(","),
    async close() {
      for (const s of servers) await s.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
