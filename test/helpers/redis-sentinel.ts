/**
 * A Redis Sentinel deployment of one's own on free loopback ports: a master, one
 * replica and three sentinels (quorum 2) watching it as "mymaster", quick to notice
 * a dead master (1 s). For tests of what a failover does to the product.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort, RedisServer } from "./redis-server.ts";
import { TcpProxy } from "./tcp-proxy.ts";

export interface SentinelDeployment {
  name: string;
  master: RedisServer;
  replica: RedisServer;
  sentinels: RedisServer[];
  /** The relay the replica reaches its master through, with `relayReplication`: holding it holds replication. */
  replication: TcpProxy | null;
  /** `host:port,…` as REDIS_SENTINELS takes it. */
  list: string;
  /** The master's port as the sentinels see it now. */
  masterPort(): Promise<number>;
  close(): Promise<void>;
}

export interface SentinelOptions {
  name?: string;
  /**
   * The replica replicates through a relay (`replication`), so a test can hold what the
   * master passes on and lose it with the master. The sentinels would point such a
   * replica at the master itself after `failoverTimeoutMs`: make that longer than the test.
   */
  relayReplication?: boolean;
  failoverTimeoutMs?: number;
}

export async function startSentinels(options: SentinelOptions = {}): Promise<SentinelDeployment> {
  const name = options.name ?? "mymaster";
  const dir = mkdtempSync(join(tmpdir(), "pc-sentinel-"));
  const master = await RedisServer.start();
  const replication = options.relayReplication ? await new TcpProxy("127.0.0.1", master.port).start() : null;
  const replica = await RedisServer.start(undefined, ["--replicaof", "127.0.0.1", String(replication?.port ?? master.port)]);
  const sentinels: RedisServer[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const conf = join(dir, `sentinel-${i}.conf`);
    // Sentinel rewrites its own file: one each, in a directory of the test's own.
    writeFileSync(
      conf,
      [
        `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} ${options.failoverTimeoutMs ?? 5000}`,
        `sentinel parallel-syncs ${name} 1`,
        "",
      ].join("\n"),
    );
    sentinels.push(await RedisServer.start(port, [conf, "--sentinel"]));
  }
  // The replica in sync before anything is written.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const info = await query(replica.port, ["INFO", "replication"]);
    if (String(info).includes("master_link_status:up")) break;
    if (Date.now() > deadline) throw new Error("replica did not sync");
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    name,
    master,
    replica,
    sentinels,
    replication,
    list: sentinels.map((s) => `127.0.0.1:${s.port}`).join(","),
    async masterPort() {
      for (const s of sentinels) {
        try {
          const answer = (await query(s.port, ["SENTINEL", "get-master-addr-by-name", name])) as string[];
          return Number(answer[1]);
        } catch {
          // That sentinel is down: ask the next.
        }
      }
      throw new Error("no sentinel answered");
    },
    async close() {
      for (const s of sentinels) await s.stop().catch(() => {});
      await replica.stop().catch(() => {});
      await master.stop().catch(() => {});
      await replication?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function query(port: number, command: string[]): Promise<unknown> {
  const client = new Redis({
    port,
    host: "127.0.0.1",
    lazyConnect: true,
    connectTimeout: 1_000,
    commandTimeout: 1_000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    return await client.call(command[0] as string, ...command.slice(1));
  } finally {
    client.disconnect();
  }
}
