/**
 * The Redis store (ioredis). Commands fail fast when Redis is down (no offline
 * queue, short command timeout), so a router can fall back to the key service or
 * refuse with 503 instead of hanging. Every command goes through one circuit breaker:
 * after a few consecutive failures or timeouts (a black-holed Redis answers nothing
 * and each command would wait out its timeout) commands fail at once, until a PING
 * probe finds Redis answering again. Pub/sub uses its own connection; when it
 * reconnects, messages may have been missed, so `onReset` tells the subscriber to
 * drop what it cached.
 */
import calculateSlot from "cluster-key-slot";
import { Cluster, Redis, type RedisOptions, ReplyError } from "ioredis";
import { randomUUID } from "node:crypto";
import { CircuitBreaker } from "../breaker/index.ts";
import { type MasterChange, WriteLedger } from "./ledger.ts";
import type {
  AdmitCall,
  CounterBatch,
  Admission,
  QuotaCheck,
  RateCheck,
  SetMode,
  Store,
  StreamEntry,
  StreamReadOptions,
  StreamStore,
} from "./store.ts";

const SET_IF_NEWER = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, obj = pcall(cjson.decode, cur)
  if ok and type(obj) == 'table' and tonumber(obj.v) then
    local have = tonumber(obj.v)
    local want = tonumber(ARGV[2])
    if have > want then return 0 end
    if have == want and ARGV[4] == 'fill' then
      -- The same record: a fill only renews its freshness (stale-if-error keeps
      -- it past that), never anything else.
      local curFresh = tonumber(string.match(cur, ',"freshUntil":(%d+)}$'))
      local newFresh = tonumber(string.match(ARGV[1], ',"freshUntil":(%d+)}$'))
      if not (curFresh and newFresh and newFresh > curFresh) then return 0 end
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1`;

// GCRA (generic cell rate algorithm) on Redis' own clock so routers' clocks do not
// matter: one round trip, atomic. Stores the theoretical arrival time (µs).
const GCRA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, math.ceil((allow_at - now) / 1000), 0}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0, math.floor((now - allow_at) / interval)}`;

const INCR = `
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n`;

// Several GCRA buckets and a monthly quota in one atomic step, for up to `want`
// requests at once (see Store.admit). K: the n bucket keys, then the quota key if any,
// then the quota's legacy key if any (QuotaCheck.legacyKey).
// A: n, want, then interval (µs) and burst per bucket, then the quota's limit and TTL
// (ms). A bucket's room is the number of intervals that fit before its allow-at time
// passes now. Times are kept as integers (string.format %d): Lua's default number
// format would round them.
const ADMIT_FUNCTION = `
local function admit(now, K, A, has_quota)
  local n = tonumber(A[1])
  local grant = tonumber(A[2])
  local retry = 0
  local least = -1
  local tightest = 0
  local slowest = 0
  local tats = {}
  for i = 1, n do
    local interval = tonumber(A[2 * i + 1])
    local burst = tonumber(A[2 * i + 2])
    local tat = tonumber(redis.call('GET', K[i])) or now
    if tat < now then tat = now end
    tats[i] = tat
    local room = math.floor((now - tat) / interval) + burst
    if room < 1 then
      local wait = tat + interval - burst * interval - now
      if wait > retry then
        retry = wait
        slowest = i - 1
      end
    elseif least < 0 or room < least then
      least = room
      tightest = i - 1
    end
  end
  if retry > 0 then return {1, math.ceil(retry / 1000), 0, 0, slowest, 0} end
  if least >= 0 and least < grant then grant = least end
  local used = 0
  if has_quota then
    local limit = tonumber(A[2 * n + 3])
    used = tonumber(redis.call('GET', K[n + 1]))
    if not used then
      used = 0
      -- A counter under its name of an earlier release is carried over once.
      if K[n + 2] then
        local old = tonumber(redis.call('GET', K[n + 2]))
        if old then
          used = old
          redis.call('SET', K[n + 1], string.format('%d', old), 'PX', A[2 * n + 4])
          redis.call('DEL', K[n + 2])
        end
      end
    end
    if used >= limit then return {2, 0, used, 0, 0, 0} end
    if limit - used < grant then grant = limit - used end
    used = redis.call('INCRBY', K[n + 1], grant)
    if used == grant then redis.call('PEXPIRE', K[n + 1], A[2 * n + 4]) end
  end
  local reset = 0
  for i = 1, n do
    local new_tat = tats[i] + grant * tonumber(A[2 * i + 1])
    if i - 1 == tightest then reset = new_tat - now end
    redis.call('SET', K[i], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
  end
  local remaining = 0
  if least > grant then remaining = least - grant end
  return {0, remaining, math.ceil(reset / 1000), used, tightest, grant}
end
`;

const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
`;

// KEYS and ARGV as K and A above.
const ADMIT = `${NOW}${ADMIT_FUNCTION}
return admit(now, KEYS, ARGV, #KEYS > tonumber(ARGV[1]))`;

// Several admits in one call, each decided as by ADMIT, in order, on one clock (see
// Store.admitMany). ARGV: the number of admits, then for each: n, want, the number of
// quota keys (0, 1, or 2 with a legacy key), then its A after n and want; KEYS: each
// admit's K, in order.
// Answers: six numbers per admit, as ADMIT's.
const ADMIT_MANY = `${NOW}${ADMIT_FUNCTION}
local out = {}
local ki = 0
local ai = 2
for s = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[ai])
  local has_quota = ARGV[ai + 2] ~= '0'
  local A = {ARGV[ai], ARGV[ai + 1]}
  for j = 1, 2 * n do A[2 + j] = ARGV[ai + 2 + j] end
  local nk = n
  if has_quota then
    A[2 * n + 3] = ARGV[ai + 2 * n + 3]
    A[2 * n + 4] = ARGV[ai + 2 * n + 4]
    nk = n + tonumber(ARGV[ai + 2])
    ai = ai + 2
  end
  ai = ai + 3 + 2 * n
  local K = {}
  for j = 1, nk do K[j] = KEYS[ki + j] end
  ki = ki + nk
  local r = admit(now, K, A, has_quota)
  for j = 1, 6 do out[#out + 1] = r[j] end
end
return out`;

// Gives back unused requests (see Store.refund). KEYS and ARGV[1] as for ADMIT;
// ARGV[2] the count; then the interval (µs) per bucket. A bucket moved back to now
// or earlier is full: its key is deleted. The quota never goes below 0 and keeps its
// TTL; a key that expired (or a month that ended) is not recreated.
const REFUND = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local give = tonumber(ARGV[2])
for i = 1, n do
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat then
    local back = tat - give * tonumber(ARGV[2 + i])
    if back <= now then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], string.format('%d', back), 'PX', math.ceil((back - now) / 1000) + 1)
    end
  end
end
if #KEYS > n and redis.call('EXISTS', KEYS[n + 1]) == 1 then
  local left = redis.call('DECRBY', KEYS[n + 1], give)
  if left < 0 then redis.call('INCRBY', KEYS[n + 1], -left) end
end
return 1`;

// HINCRBY field by, for each pair of ARGV, in one atomic step.
const ADD_COUNTERS = `
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1`;

const TAKE = `
local v = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return v`;

// Claim a counter batch: a batch left at KEYS[2] is answered as it is; else the
// counters at KEYS[1] move there (RENAME: no increment can land in between) and are
// named ARGV[1]. The name is the hash's field "#batch".
const CLAIM = `
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[2], '#batch', ARGV[1])
end
return redis.call('HGETALL', KEYS[2])`;

// Drop a claimed batch only if it is still the one named (a newer claim stays).
const RELEASE = `
if redis.call('HGET', KEYS[1], '#batch') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`;

// Append a batch to a stream only as far as the bound allows: the backlog stays
// bounded without trimming entries no consumer has stored yet (the caller counts
// the refused rest). MAXLEN never trims here; it is a guard against misuse.
const STREAM_APPEND = `
local max = tonumber(ARGV[1])
local n = #ARGV - 1
local room = max - redis.call('XLEN', KEYS[1])
if room < n then n = room end
if n < 0 then n = 0 end
for i = 2, n + 1 do redis.call('XADD', KEYS[1], 'MAXLEN', max, '*', 'e', ARGV[i]) end
return n`;

type RawEntry = [string, string[] | null];

function entriesOf(raw: RawEntry[]): StreamEntry[] {
  const out: StreamEntry[] = [];
  for (const [id, fields] of raw) {
    // A deleted entry still listed as pending comes back without fields.
    out.push({ id, data: fields && fields[0] === "e" ? (fields[1] as string) : "" });
  }
  return out;
}

/** One admit's answer: six numbers from `at` in a script's reply. */
function admission(reply: number[], at: number): Admission {
  const code = reply[at] as number;
  const a = reply[at + 1] as number;
  const b = reply[at + 2] as number;
  const bucket = reply[at + 4] as number;
  if (code === 1) return { ok: false, code: "rate", retryAfterMs: a, bucket };
  if (code === 2) return { ok: false, code: "quota", used: b };
  return { ok: true, remaining: a, resetMs: b, used: reply[at + 3] as number, bucket, granted: reply[at + 5] as number };
}

/** A bucket's emission interval as the scripts keep it: whole microseconds, at least 1. */
function intervalUs(r: RateCheck): number {
  return Math.max(1, Math.round(r.emissionIntervalMs * 1000));
}

type Scripted = Redis & {
  admit(...args: (string | number)[]): Promise<number[]>;
  admitMany(...args: (string | number)[]): Promise<number[]>;
  refund(...args: (string | number)[]): Promise<number>;
  takeHash(key: string): Promise<string[]>;
  claimCounters(key: string, claimKey: string, batch: string): Promise<string[]>;
  releaseCounters(claimKey: string, batch: string): Promise<number>;
  addCounters(key: string, ...fieldsAndIncrements: (string | number)[]): Promise<number>;
  streamAppend(key: string, maxLen: number, ...payloads: string[]): Promise<number>;
  setIfNewer(key: string, value: string, version: number, ttl: number, mode: string): Promise<number>;
  gcra(key: string, intervalUs: number, burst: number): Promise<[number, number, number]>;
  incrTtl(key: string, by: number, ttl: number): Promise<number>;
};

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

export interface RedisStoreOptions extends RedisConnection {
  prefix: string;
  commandTimeoutMs?: number;
  /** Consecutive failures or timeouts that open the breaker (default 3). */
  breakerThreshold?: number;
  /** How often the breaker probes Redis while open (default 1,000 ms). */
  breakerProbeMs?: number;
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

/** Clients closed on purpose: the only ones allowed to stay ended. */
const closedOnPurpose = new WeakSet<Redis>();

/** Close a client made by `connect` for good. */
function disconnect(client: Redis): void {
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
function connect(c: RedisConnection, options: RedisOptions): Redis {
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
function credentials(url: string | undefined): { username?: string; password?: string } {
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
    // the store uses the two alike, and splits what must not cross slots (`#sharded`).
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

export class RedisStore implements Store, StreamStore {
  readonly kind = "redis" as const;
  readonly #prefix: string;
  readonly #redis: Scripted;
  readonly #connection: RedisConnection;
  readonly #subscribers = new Set<Redis>();
  #blocking: Redis | null = null;
  readonly #groups = new Set<string>();
  readonly breaker: CircuitBreaker;
  /** A Redis Cluster: keys of different hash tags may live on different nodes. */
  readonly sharded: boolean;
  readonly #streamReplicas: number;
  /** How long a stream append waits for its replicas: within the command timeout, so a slow replica is not taken for a dead Redis. */
  readonly #replicaWaitMs: number;
  /** What this store wrote, for counting what a change of master loses (one master at a time only). */
  readonly #ledger: WriteLedger | null;

  constructor(options: RedisStoreOptions) {
    this.#prefix = options.prefix;
    this.#connection = {
      url: options.url,
      sentinels: options.sentinels,
      sentinelName: options.sentinelName,
      clusterNodes: options.clusterNodes,
    };
    this.sharded = (options.clusterNodes?.length ?? 0) > 0;
    // WAIT answers for the connection it is sent on; a cluster client sends it to any node.
    if (this.sharded && (options.streamReplicas ?? 0) > 0) throw new Error("REDIS_AUDIT_REPLICAS: not on a cluster");
    this.#streamReplicas = options.streamReplicas ?? 0;
    this.#replicaWaitMs = Math.max(50, Math.floor((options.commandTimeoutMs ?? 500) * 0.6));
    // The prefix comes first in every key: braces in it would be the hash tag of every key.
    if (this.sharded && /[{}]/.test(options.prefix)) throw new Error("Redis key prefix: no { or } on a cluster");
    this.#redis = connect(this.#connection, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: options.commandTimeoutMs ?? 500,
      connectTimeout: 1_000,
      lazyConnect: false,
      retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
    }) as Scripted;
    this.#redis.on("error", () => {
      // Reported through ping() and failed commands; reconnects on its own.
    });
    this.#redis.defineCommand("setIfNewer", { numberOfKeys: 1, lua: SET_IF_NEWER });
    this.#redis.defineCommand("gcra", { numberOfKeys: 1, lua: GCRA });
    this.#redis.defineCommand("incrTtl", { numberOfKeys: 1, lua: INCR });
    this.#redis.defineCommand("admit", { lua: ADMIT });
    this.#redis.defineCommand("admitMany", { lua: ADMIT_MANY });
    this.#redis.defineCommand("refund", { lua: REFUND });
    this.#redis.defineCommand("takeHash", { numberOfKeys: 1, lua: TAKE });
    this.#redis.defineCommand("claimCounters", { numberOfKeys: 2, lua: CLAIM });
    this.#redis.defineCommand("releaseCounters", { numberOfKeys: 1, lua: RELEASE });
    this.#redis.defineCommand("addCounters", { numberOfKeys: 1, lua: ADD_COUNTERS });
    this.#redis.defineCommand("streamAppend", { numberOfKeys: 1, lua: STREAM_APPEND });
    this.breaker = new CircuitBreaker({
      name: "redis",
      failureThreshold: options.breakerThreshold ?? 3,
      openMs: options.breakerProbeMs ?? 1_000,
      isFailure: isOutage,
      probe: async () => (await this.#redis.ping()) === "PONG",
    });
    this.#ledger = this.sharded
      ? null
      : new WriteLedger({ client: this.#redis, key: `${this.#prefix}ledger:${randomUUID()}`, call: (fn) => this.#call(fn) });
  }

  /**
   * Called when this store finds itself on another master than before (a failover, or
   * a restart), with what it wrote that the new master may lack, at most (`ledger.ts`).
   * Never on a cluster.
   */
  onMasterChange(listener: (change: MasterChange) => void): () => void {
    return this.#ledger?.onMasterChange(listener) ?? (() => {});
  }

  /** One command through the breaker: while Redis is known down, it fails at once. */
  #call<T>(fn: () => Promise<T>): Promise<T> {
    return this.breaker.run(fn);
  }

  /** Resolves once connected (or rejects after `timeoutMs`). */
  async ready(timeoutMs = 5_000): Promise<void> {
    if (this.#redis.status === "ready") return;
    await new Promise<void>((resolve, reject) => {
      const c = this.#connection;
      const list = (nodes: readonly { host: string; port: number }[]) => nodes.map((x) => `${x.host}:${x.port}`).join(",");
      const where = c.clusterNodes?.length
        ? `cluster of ${list(c.clusterNodes)}`
        : c.sentinels?.length
          ? `master "${c.sentinelName ?? "mymaster"}" of ${list(c.sentinels)}`
          : `at ${redactUrl(c.url ?? "")}`;
      const timer = setTimeout(() => reject(new Error(`Redis ${where} not ready`)), timeoutMs);
      this.#redis.once("ready", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  get(key: string): Promise<string | null> {
    return this.#call(() => this.#redis.get(this.#prefix + key));
  }

  async setIfNewer(key: string, value: string, version: number, ttlMs: number, mode: SetMode): Promise<boolean> {
    const ttl = Math.max(1, Math.ceil(ttlMs));
    const written = (await this.#call(() => this.#redis.setIfNewer(this.#prefix + key, value, version, ttl, mode))) === 1;
    // A router's fill lost with a master is filled again; a control plane's record is counted.
    if (written && mode === "authoritative") this.#ledger?.add("records", 1);
    return written;
  }

  async del(...keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    // On a cluster one DEL names keys of one slot only.
    if (this.sharded) await Promise.all(keys.map((k) => this.#call(() => this.#redis.del(this.#prefix + k))));
    else await this.#call(() => this.#redis.del(...keys.map((k) => this.#prefix + k)));
    this.#ledger?.add("records", keys.length);
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.#call(() => this.#redis.publish(this.#prefix + channel, message));
  }

  async subscribe(channel: string, onMessage: (message: string) => void, onReset: () => void) {
    if (this.sharded) return this.#subscribeCluster(channel, onMessage, onReset);
    const sub = connect(this.#connection, {
      connectTimeout: 1_000,
      retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
    });
    sub.on("error", () => {});
    this.#subscribers.add(sub);
    const name = this.#prefix + channel;
    let readyOnce = false;
    let subscribed = false;
    let subscribing = false;
    const attempt = async () => {
      subscribing = true;
      try {
        await sub.subscribe(name);
        subscribed = true;
      } finally {
        subscribing = false;
      }
    };
    sub.on("ready", () => {
      // ioredis re-subscribes on reconnect; anything published meanwhile is lost.
      if (readyOnce) onReset();
      readyOnce = true;
      // ioredis renews only a subscription that once succeeded: one that failed
      // (Redis down at start) is made here, else the subscriber never hears an event.
      if (!subscribed && !subscribing) attempt().then(onReset, () => {});
    });
    sub.on("message", (ch: string, message: string) => {
      if (ch === name) onMessage(message);
    });
    await attempt();
    return async () => {
      this.#subscribers.delete(sub);
      disconnect(sub);
    };
  }

  /**
   * A subscription on a cluster. A message published on any node reaches every node
   * (classic pub/sub travels the cluster bus), so one connection to any one node hears
   * them all. That node may leave: the subscription then moves to the next node named
   * in the settings or found in the cluster, and `onReset` says that what was published
   * meanwhile may be lost, as after a reconnection to one Redis. (ioredis' own cluster
   * subscriber moves silently, so it is not used.)
   */
  async #subscribeCluster(channel: string, onMessage: (message: string) => void, onReset: () => void) {
    const name = this.#prefix + channel;
    const cluster = this.#redis as unknown as Cluster;
    const configured = this.#connection.clusterNodes ?? [];
    let current: Redis | null = null;
    let stopped = false;
    let subscribedOnce = false;
    let turn = 0;
    let firstSettled: (() => void) | null = null;
    const first = new Promise<void>((resolve) => {
      firstSettled = resolve;
    });
    const candidates = () => {
      // The nodes the cluster client knows now, then the configured ones.
      const known = cluster.nodes?.("all").map((n) => ({ host: n.options.host ?? "", port: n.options.port ?? 0 })) ?? [];
      const seen = new Set<string>();
      return [...known, ...configured].filter((n) => {
        const id = `${n.host}:${n.port}`;
        if (n.port === 0 || seen.has(id)) return false;
        seen.add(id);
        return true;
      });
    };
    const open = () => {
      if (stopped) return;
      const nodes = candidates();
      const node = nodes[turn++ % Math.max(1, nodes.length)];
      if (node === undefined) {
        setTimeout(open, 500).unref();
        return;
      }
      const sub = new Redis({
        host: node.host,
        port: node.port,
        connectTimeout: 1_000,
        ...credentials(this.#connection.url),
        // A node that does not come back within a few tries is left for the next one.
        retryStrategy: (attempt) => (attempt > 3 ? null : attempt * 100),
      });
      current = sub;
      this.#subscribers.add(sub);
      sub.on("error", () => {});
      sub.on("message", (ch: string, message: string) => {
        if (ch === name && sub === current) onMessage(message);
      });
      sub.on("ready", () => {
        // Also after ioredis reconnected this node (it re-subscribes by itself).
        sub.subscribe(name).then(
          () => {
            if (subscribedOnce) onReset();
            subscribedOnce = true;
            firstSettled?.();
          },
          () => sub.disconnect(),
        );
      });
      sub.once("end", () => {
        this.#subscribers.delete(sub);
        if (stopped || sub !== current) return;
        // Every node tried once without a subscription: the caller goes on, this keeps trying.
        if (!subscribedOnce && turn >= Math.max(1, candidates().length)) firstSettled?.();
        setTimeout(open, 100).unref();
      });
    };
    open();
    await first;
    return async () => {
      stopped = true;
      if (current) {
        this.#subscribers.delete(current);
        disconnect(current);
      }
    };
  }

  /** Whether Redis answers now; false at once while the breaker knows it is down. */
  async ping(): Promise<boolean> {
    if (this.breaker.state !== "closed") return false;
    try {
      return (await this.#redis.ping()) === "PONG";
    } catch {
      return false;
    }
  }

  async gcra(key: string, emissionIntervalMs: number, burst: number) {
    const interval = Math.max(1, Math.round(emissionIntervalMs * 1000));
    const [allowed, retryAfterMs, remaining] = await this.#call(() => this.#redis.gcra(this.#prefix + key, interval, burst));
    if (allowed === 1) this.#ledger?.add("admits", 1);
    return { allowed: allowed === 1, retryAfterMs, remaining };
  }

  incr(key: string, by: number, ttlMs: number): Promise<number> {
    return this.#call(() => this.#redis.incrTtl(this.#prefix + key, by, Math.ceil(ttlMs)));
  }

  async admit(rates: readonly RateCheck[], quota: QuotaCheck | null, want = 1): Promise<Admission> {
    const keys: string[] = [];
    const args: (string | number)[] = [];
    this.#admitArgs(keys, args, { rates, quota, want }, false);
    // ioredis: a command defined without numberOfKeys takes the key count first.
    const answer = admission(await this.#call(() => this.#redis.admit(keys.length, ...keys, ...args)), 0);
    this.#countAdmits([answer]);
    return answer;
  }

  async admitMany(calls: readonly AdmitCall[]): Promise<Admission[]> {
    if (calls.length === 0) return [];
    if (this.sharded) return this.#admitBySlot(calls);
    const keys: string[] = [];
    const args: (string | number)[] = [calls.length];
    for (const call of calls) this.#admitArgs(keys, args, call, true);
    const flat = await this.#call(() => this.#redis.admitMany(keys.length, ...keys, ...args));
    const answers = calls.map((_, i) => admission(flat, 6 * i));
    this.#countAdmits(answers);
    return answers;
  }

  #countAdmits(answers: readonly Admission[]): void {
    if (this.#ledger === null) return;
    let granted = 0;
    for (const a of answers) if (a.ok) granted += a.granted ?? 1;
    this.#ledger.add("admits", granted);
  }

  /**
   * admitMany on a cluster: one script call per slot (a call's keys share its tenant's
   * hash tag), in parallel; each call is still decided atomically, the calls of one
   * slot together, and the answers come back in the calls' order.
   */
  async #admitBySlot(calls: readonly AdmitCall[]): Promise<Admission[]> {
    const bySlot = new Map<number, number[]>();
    calls.forEach((call, i) => {
      const first = call.rates[0]?.key ?? call.quota?.key;
      const slot = first === undefined ? -1 : calculateSlot(this.#prefix + first);
      const group = bySlot.get(slot);
      if (group) group.push(i);
      else bySlot.set(slot, [i]);
    });
    const out = new Array<Admission>(calls.length);
    await Promise.all(
      [...bySlot.values()].map(async (indexes) => {
        const keys: string[] = [];
        const args: (string | number)[] = [indexes.length];
        for (const i of indexes) this.#admitArgs(keys, args, calls[i] as AdmitCall, true);
        // A group without keys (no bucket, no quota) runs on any node.
        const flat = await this.#call(() => this.#redis.admitMany(keys.length, ...keys, ...args));
        indexes.forEach((i, j) => {
          out[i] = admission(flat, 6 * j);
        });
      }),
    );
    return out;
  }

  #admitArgs(keys: string[], args: (string | number)[], call: AdmitCall, flagQuota: boolean): void {
    const { rates, quota } = call;
    const legacy = quota?.legacyKey !== undefined && !this.sharded;
    args.push(rates.length, Math.max(1, Math.floor(call.want ?? 1)));
    if (flagQuota) args.push(quota === null ? 0 : legacy ? 2 : 1);
    for (const r of rates) {
      keys.push(this.#prefix + r.key);
      args.push(intervalUs(r), r.burst);
    }
    if (quota !== null) {
      keys.push(this.#prefix + quota.key);
      if (legacy) keys.push(this.#prefix + (quota.legacyKey as string));
      args.push(quota.limit, Math.max(1, Math.ceil(quota.ttlMs)));
    }
  }

  async refund(rates: readonly RateCheck[], quota: QuotaCheck | null, n: number): Promise<void> {
    if (n < 1 || (rates.length === 0 && quota === null)) return;
    const keys: string[] = [];
    const args: (string | number)[] = [rates.length, Math.floor(n)];
    for (const r of rates) {
      keys.push(this.#prefix + r.key);
      args.push(intervalUs(r));
    }
    if (quota !== null) keys.push(this.#prefix + quota.key);
    await this.#call(() => this.#redis.refund(keys.length, ...keys, ...args));
  }

  async addCounters(key: string, increments: Record<string, number>, units?: number): Promise<void> {
    const args: (string | number)[] = [];
    for (const field in increments) {
      const by = increments[field] as number;
      if (by !== 0) args.push(field, by);
    }
    if (args.length === 0) return;
    // One script call, atomic like a MULTI of HINCRBYs but one command to build and
    // parse instead of one per field (a router flushes thousands of fields at once).
    await this.#call(() => this.#redis.addCounters(this.#prefix + key, ...args));
    this.#ledger?.add("counters", units ?? args.length / 2);
  }

  async takeCounters(key: string): Promise<Record<string, number>> {
    const flat = await this.#call(() => this.#redis.takeHash(this.#prefix + key));
    const out: Record<string, number> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = Number(flat[i + 1]);
    return out;
  }

  async claimCounters(key: string, claimKey: string, batch: string): Promise<CounterBatch | null> {
    const flat = await this.#call(() => this.#redis.claimCounters(this.#prefix + key, this.#prefix + claimKey, batch));
    if (flat.length === 0) return null;
    const counters: Record<string, number> = {};
    let name = batch;
    for (let i = 0; i + 1 < flat.length; i += 2) {
      if (flat[i] === "#batch") name = flat[i + 1] as string;
      else counters[flat[i] as string] = Number(flat[i + 1]);
    }
    return { batch: name, counters };
  }

  async releaseCounters(claimKey: string, batch: string): Promise<void> {
    await this.#call(() => this.#redis.releaseCounters(this.#prefix + claimKey, batch));
  }

  async streamAppend(stream: string, payloads: string[], maxLen: number): Promise<number> {
    if (payloads.length === 0) return 0;
    const appended = await this.#call(() => this.#redis.streamAppend(this.#prefix + stream, maxLen, ...payloads));
    this.#ledger?.add("stream", appended);
    if (this.#streamReplicas > 0 && appended > 0) {
      const upTo = this.#ledger?.snapshot();
      // On the connection that appended: every write it made so far, replicated. Not
      // replicated in time, the batch is not written as far as the caller knows: it is
      // appended again (the consumer stores an event once by its request id), so a
      // failover to a replica cannot take it away unseen.
      const acked = await this.#call(() => this.#redis.wait(this.#streamReplicas, this.#replicaWaitMs));
      if (acked < this.#streamReplicas)
        throw new Error(`stream append reached ${acked} of ${this.#streamReplicas} replicas within ${this.#replicaWaitMs} ms`);
      if (upTo) this.#ledger?.confirmed(upTo);
    }
    return appended;
  }

  async #ensureGroup(client: Redis, key: string, group: string): Promise<void> {
    const id = `${key}\n${group}`;
    if (this.#groups.has(id)) return;
    try {
      await this.#call(() => client.xgroup("CREATE", key, group, "0", "MKSTREAM"));
    } catch (error) {
      if (!String((error as Error).message).includes("BUSYGROUP")) throw error;
    }
    this.#groups.add(id);
  }

  /** Blocking reads get their own connection (no command timeout shorter than the block). */
  #blocker(): Redis {
    if (!this.#blocking) {
      this.#blocking = connect(this.#connection, {
        // Queue the first read until this connection is up (it is made on first use).
        enableOfflineQueue: true,
        maxRetriesPerRequest: 1,
        connectTimeout: 1_000,
        retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
      });
      this.#blocking.on("error", () => {});
    }
    return this.#blocking;
  }

  async streamRead(stream: string, o: StreamReadOptions): Promise<StreamEntry[]> {
    const key = this.#prefix + stream;
    const client = o.blockMs > 0 && !o.pending ? this.#blocker() : this.#redis;
    const args: (string | number)[] = ["GROUP", o.group, o.consumer, "COUNT", o.count];
    if (o.blockMs > 0 && !o.pending) args.push("BLOCK", o.blockMs);
    args.push("STREAMS", key, o.pending ? "0" : ">");
    for (let attempt = 0; ; attempt++) {
      await this.#ensureGroup(this.#redis, key, o.group);
      try {
        const reply = (await this.#call(() => client.call("XREADGROUP", ...args))) as unknown[] | null;
        if (!reply || reply.length === 0) return [];
        // RESP3 answers a map (flattened to [key, entries]); RESP2 a list of [key, entries].
        const entries = typeof reply[0] === "string" ? reply[1] : (reply[0] as unknown[])[1];
        return entriesOf((entries ?? []) as RawEntry[]);
      } catch (error) {
        // The group vanished (Redis restarted empty, or the key was deleted): recreate it once.
        if (attempt > 0 || !String((error as Error).message).includes("NOGROUP")) throw error;
        this.#groups.delete(`${key}\n${o.group}`);
      }
    }
  }

  async streamAck(stream: string, group: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const key = this.#prefix + stream;
    const results = await this.#call(() =>
      this.#redis
        .multi()
        .xack(key, group, ...ids)
        .xdel(key, ...ids)
        .exec(),
    );
    const failed = results?.find(([error]) => error);
    if (!results || failed) throw failed?.[0] ?? new Error("stream acknowledgement failed");
  }

  async streamClaim(stream: string, group: string, consumer: string, minIdleMs: number, count: number): Promise<StreamEntry[]> {
    const key = this.#prefix + stream;
    await this.#ensureGroup(this.#redis, key, group);
    const reply = (await this.#call(() =>
      this.#redis.call("XAUTOCLAIM", key, group, consumer, minIdleMs, "0-0", "COUNT", count),
    )) as [string, RawEntry[], string[]?];
    return entriesOf(reply[1]);
  }

  streamLength(stream: string): Promise<number> {
    return this.#call(() => this.#redis.xlen(this.#prefix + stream));
  }

  async close(): Promise<void> {
    this.breaker.close();
    if (this.#blocking) disconnect(this.#blocking);
    this.#blocking = null;
    for (const sub of this.#subscribers) disconnect(sub);
    this.#subscribers.clear();
    this.#ledger?.close();
    disconnect(this.#redis);
  }
}
