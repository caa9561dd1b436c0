/**
 * Where Redis is and how the store's clients reach it: the connection settings (one
 * URL, Sentinel, or Cluster), building an ioredis client or cluster from them, a
 * client that comes back after ioredis ended it during a failover, and the circuit
 * breaker every command of the store goes through, with what counts as an outage.
 */
import { Cluster, Redis, type RedisOptions, ReplyError } from "ioredis";
import { CircuitBreaker } from "../breaker/index.ts";

/**
 * Where Redis is: one address (`url`), a master found through Redis Sentinel
 * (`sentinels` and `sentinelName`), or a Redis Cluster (`clusterNodes`, some of its
 * nodes: the rest are found from them). A `url` given with either of the others lends
 * its user, password and database number. Through Sentinel every connection follows
 * the master across a failover; on a cluster every command goes to the master of its
 * key's slot, and follows the slot when a replica takes over.
 */
export interface RedisConnection {
  url?: string | undefined;
  sentinels?: readonly { host: string; port: number }[] | undefined;
  sentinelName?: string | undefined;
  clusterNodes?: readonly { host: string; port: number }[] | undefined;
  /**
   * Replicas that must have an append to a stream (the audit trail) before it counts
   * as written (WAIT; REDIS_AUDIT_REPLICAS). 0: the master's answer is enough, and a
   * failover can lose what it had not yet replicated.
   */
  streamReplicas?: number | undefined;
}

/**
 * Redis answered, so it is up: an error reply (a missing consumer group, a script
 * error) says nothing about its health, except the replies of a server that cannot
 * serve yet (loading its data set, a script stuck, a replica without master).
 */
function isOutage(error: unknown): boolean {
  if (!(error instanceof ReplyError)) return true;
  return /^(LOADING|BUSY|MASTERDOWN|READONLY|CLUSTERDOWN|TRYAGAIN)/.test(String((error as Error).message));
}

/** `host:port,host:port` (REDIS_SENTINELS, REDIS_CLUSTER_NODES) as a list; throws on a malformed entry. */
export function parseHostPorts(list: string): { host: string; port: number }[] {
  return list
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0)
    .map((entry) => {
      const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(entry);
      const port = Number(m?.[2]);
      if (m === null || port < 1 || port > 65_535) throw new Error(`not host:port: ${JSON.stringify(entry)}`);
      return { host: (m[1] as string).replace(/^\[|\]$/g, ""), port };
    });
}

/** A Redis URL without its password, for messages. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(invalid URL)";
  }
}

/** Where a connection points, for messages. */
export function describeConnection(c: RedisConnection): string {
  const list = (nodes: readonly { host: string; port: number }[]) => nodes.map((x) => `${x.host}:${x.port}`).join(",");
  return c.clusterNodes?.length
    ? `cluster of ${list(c.clusterNodes)}`
    : c.sentinels?.length
      ? `master "${c.sentinelName ?? "mymaster"}" of ${list(c.sentinels)}`
      : `at ${redactUrl(c.url ?? "")}`;
}

/** Clients closed on purpose: the only ones allowed to stay ended. */
const closedOnPurpose = new WeakSet<Redis>();

/** Close a client made by `connect` for good. */
export function disconnect(client: Redis): void {
  closedOnPurpose.add(client);
  client.disconnect();
}

/**
 * One ioredis client for a connection, with the client's own options, that never
 * stays ended unless `disconnect` closed it. ioredis ends a client for good when a
 * reconnection attempt is cut short: with sentinels, a failover announced while the
 * client is asking them for the master (the failover detector closes the attempt in
 * flight) leaves it "ended", every later command refused — a process that outlives a
 * failover would never reach the new master. Such a client connects again.
 */
export function connect(c: RedisConnection, options: RedisOptions): Redis {
  const client = newClient(c, options);
  client.on("end", () => {
    if (closedOnPurpose.has(client)) return;
    setTimeout(() => {
      if (!closedOnPurpose.has(client) && client.status === "end") client.connect().catch(() => {});
    }, 100).unref();
  });
  return client;
}

/** The user and password a URL lends to sentinel and cluster connections. */
export function credentials(url: string | undefined): { username?: string; password?: string } {
  const u = url ? new URL(url) : null;
  return {
    ...(u?.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u?.username ? { username: decodeURIComponent(u.username) } : {}),
  };
}

function newClient(c: RedisConnection, options: RedisOptions): Redis {
  const fromUrl = c.url ? new URL(c.url) : null;
  if (c.clusterNodes !== undefined && c.clusterNodes.length > 0) {
    const { enableOfflineQueue, retryStrategy: _perNode, lazyConnect, ...perNode } = options;
    const cluster = new Cluster(
      c.clusterNodes.map((x) => ({ host: x.host, port: x.port })),
      {
        enableOfflineQueue: enableOfflineQueue ?? true,
        lazyConnect: lazyConnect ?? false,
        // Keeps looking for the cluster while no node answers (a number: never gives up).
        clusterRetryStrategy: (attempt: number) => Math.min(attempt * 100, 1_000),
        slotsRefreshTimeout: 1_000,
        // A slot moving to a promoted replica: asked again after the slot map is refreshed.
        retryDelayOnFailover: 200,
        retryDelayOnClusterDown: 200,
        redisOptions: { ...perNode, ...credentials(c.url) },
      },
    );
    // The same commands, scripts and events as one connection (ioredis' Commander):
    // the store uses the two alike, and splits what must not cross slots (`RedisStore.sharded`).
    return cluster as unknown as Redis;
  }
  if (c.sentinels !== undefined && c.sentinels.length > 0) {
    return new Redis({
      sentinels: c.sentinels.map((x) => ({ host: x.host, port: x.port })),
      name: c.sentinelName ?? "mymaster",
      // Asks the sentinels as soon as one announces a new master, not only on errors.
      failoverDetector: true,
      sentinelRetryStrategy: (attempt: number) => Math.min(attempt * 100, 1_000),
      ...credentials(c.url),
      ...(fromUrl && fromUrl.pathname.length > 1 ? { db: Number(fromUrl.pathname.slice(1)) } : {}),
      ...options,
    });
  }
  if (!c.url) throw new Error("Redis: neither a URL nor sentinels");
  return new Redis(c.url, options);
}

/**
 * The breaker of a store's commands: after `breakerThreshold` consecutive failures or
 * timeouts (a black-holed Redis answers nothing and each command would wait out its
 * timeout) commands fail at once, until a PING probe, every `breakerProbeMs`, finds
 * Redis answering again.
 */
export function redisBreaker(client: Redis, options: { breakerThreshold?: number; breakerProbeMs?: number }): CircuitBreaker {
  return new CircuitBreaker({
    name: "redis",
    failureThreshold: options.breakerThreshold ?? 3,
    openMs: options.breakerProbeMs ?? 1_000,
    isFailure: isOutage,
    probe: async () => (await client.ping()) === "PONG",
  });
}
