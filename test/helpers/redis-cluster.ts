/**
 * A Redis Cluster of one's own: three masters (`redis-server --cluster-enabled yes` on
 * free loopback ports, slots spread by `redis-cli --cluster create`), no persistence,
 * and no replicas unless asked for (then a master that dies is replaced by its replica
 * within a few seconds). For the suites that must hold on a cluster as on one Redis.
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
  /** Every node, masters and replicas (which is which: `roles()`). */
  nodes: RedisServer[];
  /** `host:port,…` as REDIS_CLUSTER_NODES takes it. */
  list: string;
  /** Each live node's role now, by port, and the master a replica follows. */
  roles(): Promise<Map<number, { role: "master" | "slave"; of?: number }>>;
  close(): Promise<void>;
}

export async function startRedisCluster(masters = 3, replicasEach = 0): Promise<RedisClusterDeployment> {
  const dir = mkdtempSync(join(tmpdir(), "pc-cluster-"));
  const servers: RedisServer[] = [];
  try {
    for (let i = 0; i < masters * (1 + replicasEach); i++) {
      const port = await freePort();
      servers.push(
        await RedisServer.start(port, [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          join(dir, `nodes-${port}.conf`),
          "--cluster-node-timeout",
          "2000",
          // The bus port is the client port + 10,000 unless given: past 65,535 for a
          // port from the upper ephemeral range, or taken. One of its own, free.
          "--cluster-port",
          String(await freePort()),
          // A replica's first sync starts at once (not after 5 s, waiting for others).
          "--repl-diskless-sync-delay",
          "0",
        ]),
      );
    }
    const addresses = servers.map((s) => `127.0.0.1:${s.port}`);
    await run("redis-cli", ["--cluster", "create", ...addresses, "--cluster-replicas", String(replicasEach), "--cluster-yes"], {
      timeout: 30_000,
    }).catch((error: { stdout?: string; stderr?: string }) => {
      throw new Error(`redis-cli --cluster create: ${error.stdout ?? ""}${error.stderr ?? ""}`.slice(-2_000));
    });
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
    // Every replica in sync: one that never was cannot replace its master.
    for (const s of servers) {
      for (;;) {
        const client = new Redis(s.url, { maxRetriesPerRequest: 0 });
        const info = await client.info("replication").finally(() => client.disconnect());
        if (info.includes("role:master") || info.includes("master_link_status:up")) break;
        if (Date.now() > deadline) throw new Error(`cluster replica :${s.port} not in sync`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (error) {
    for (const s of servers) await s.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    nodes: servers,
    list: servers.map((s) => `127.0.0.1:${s.port}`).join(","),
    async roles() {
      const out = new Map<number, { role: "master" | "slave"; of?: number }>();
      for (const s of servers) {
        if (s.pid === undefined) continue;
        const client = new Redis(s.url, { maxRetriesPerRequest: 0, lazyConnect: true });
        client.on("error", () => {});
        try {
          await client.connect();
          const role = (await client.call("ROLE")) as unknown[];
          out.set(s.port, role[0] === "master" ? { role: "master" } : { role: "slave", of: Number(role[2]) });
        } catch {
          // Down or not answering: not listed.
        } finally {
          client.disconnect();
        }
      }
      return out;
    },
    async close() {
      for (const s of servers) await s.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
