/**
 * The Redis store (ioredis). Commands fail fast when Redis is down (no offline
 * queue, short command timeout), so a router can fall back to the key service or
 * refuse with 503 instead of hanging. Every command goes through one circuit breaker
 * (`redisBreaker`): while Redis is known down, commands fail at once.
 *
 * This file holds the `Store` API and its key handling; the rest is split by concern:
 * `redis-connection.ts` (settings, clients, the breaker), `redis-scripts.ts` (the Lua
 * scripts and their arguments), `redis-pubsub.ts` (subscriptions) and
 * `redis-streams.ts` (the durable streams), with `ledger.ts` counting what a change of
 * master may lose.
 */
import calculateSlot from "cluster-key-slot";
import { randomUUID } from "node:crypto";
import type { CircuitBreaker } from "../breaker/index.ts";
import { type MasterChange, WriteLedger } from "./ledger.ts";
import { connect, describeConnection, disconnect, type RedisConnection, redisBreaker } from "./redis-connection.ts";
import { RedisSubscriptions } from "./redis-pubsub.ts";
import { admission, admitArgs, defineScripts, intervalUs, type Scripted } from "./redis-scripts.ts";
import { RedisStreams } from "./redis-streams.ts";
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

export interface RedisStoreOptions extends RedisConnection {
  prefix: string;
  commandTimeoutMs?: number;
  /** Consecutive failures or timeouts that open the breaker (default 3). */
  breakerThreshold?: number;
  /** How often the breaker probes Redis while open (default 1,000 ms). */
  breakerProbeMs?: number;
}

export class RedisStore implements Store, StreamStore {
  readonly kind = "redis" as const;
  readonly #prefix: string;
  readonly #redis: Scripted;
  readonly #connection: RedisConnection;
  readonly #subscriptions: RedisSubscriptions;
  readonly #streams: RedisStreams;
  readonly breaker: CircuitBreaker;
  /** A Redis Cluster: keys of different hash tags may live on different nodes. */
  readonly sharded: boolean;
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
    // The prefix comes first in every key: braces in it would be the hash tag of every key.
    if (this.sharded && /[{}]/.test(options.prefix)) throw new Error("Redis key prefix: no { or } on a cluster");
    const client = connect(this.#connection, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: options.commandTimeoutMs ?? 500,
      connectTimeout: 1_000,
      lazyConnect: false,
      retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
    });
    client.on("error", () => {
      // Reported through ping() and failed commands; reconnects on its own.
    });
    this.#redis = defineScripts(client);
    this.breaker = redisBreaker(this.#redis, options);
    this.#ledger = this.sharded
      ? null
      : new WriteLedger({ client: this.#redis, key: `${this.#prefix}ledger:${randomUUID()}`, call: (fn) => this.#call(fn) });
    this.#subscriptions = new RedisSubscriptions(this.#connection, this.#redis, this.sharded);
    this.#streams = new RedisStreams({
      redis: this.#redis,
      breaker: this.breaker,
      connection: this.#connection,
      prefix: this.#prefix,
      ledger: this.#ledger,
      streamReplicas: options.streamReplicas ?? 0,
      replicaWaitMs: Math.max(50, Math.floor((options.commandTimeoutMs ?? 500) * 0.6)),
    });
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
      const where = describeConnection(this.#connection);
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

  /** One MGET; on a cluster one per hash slot, in parallel (a slot's keys live on one node). */
  async getMany(keys: readonly string[]): Promise<(string | null)[]> {
    if (keys.length === 0) return [];
    const prefix = this.#prefix;
    if (!this.sharded) return this.#call(() => this.#redis.mget(keys.map((k) => prefix + k)));
    const out = new Array<string | null>(keys.length);
    await Promise.all(
      bySlot(keys.map((key) => calculateSlot(prefix + key))).map(async (indexes) => {
        const values = await this.#call(() => this.#redis.mget(indexes.map((i) => prefix + (keys[i] as string))));
        indexes.forEach((i, j) => {
          out[i] = values[j] ?? null;
        });
      }),
    );
    return out;
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

  subscribe(channel: string, onMessage: (message: string) => void, onReset: () => void): Promise<() => Promise<void>> {
    return this.#subscriptions.subscribe(this.#prefix + channel, onMessage, onReset);
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

  async admit(rates: readonly RateCheck[], quota: QuotaCheck | null, want = 1, force = false): Promise<Admission> {
    const keys: string[] = [];
    const args: (string | number)[] = [];
    admitArgs(keys, args, { rates, quota, want, force }, false, this.#prefix, this.sharded);
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
    for (const call of calls) admitArgs(keys, args, call, true, this.#prefix, this.sharded);
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
    const slots = calls.map((call) => {
      const first = call.rates[0]?.key ?? call.quota?.key;
      return first === undefined ? -1 : calculateSlot(this.#prefix + first);
    });
    const out = new Array<Admission>(calls.length);
    await Promise.all(
      bySlot(slots).map(async (indexes) => {
        const keys: string[] = [];
        const args: (string | number)[] = [indexes.length];
        for (const i of indexes) admitArgs(keys, args, calls[i] as AdmitCall, true, this.#prefix, this.sharded);
        // A group without keys (no bucket, no quota) runs on any node.
        const flat = await this.#call(() => this.#redis.admitMany(keys.length, ...keys, ...args));
        indexes.forEach((i, j) => {
          out[i] = admission(flat, 6 * j);
        });
      }),
    );
    return out;
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

  streamAppend(stream: string, payloads: string[], maxLen: number): Promise<number> {
    return this.#streams.append(stream, payloads, maxLen);
  }

  streamRead(stream: string, options: StreamReadOptions): Promise<StreamEntry[]> {
    return this.#streams.read(stream, options);
  }

  streamAck(stream: string, group: string, ids: string[]): Promise<void> {
    return this.#streams.ack(stream, group, ids);
  }

  streamClaim(stream: string, group: string, consumer: string, minIdleMs: number, count: number): Promise<StreamEntry[]> {
    return this.#streams.claim(stream, group, consumer, minIdleMs, count);
  }

  streamLength(stream: string): Promise<number> {
    return this.#streams.length(stream);
  }

  async close(): Promise<void> {
    this.breaker.close();
    this.#streams.close();
    this.#subscriptions.close();
    this.#ledger?.close();
    disconnect(this.#redis);
  }
}

/** The indexes of `slots` grouped by hash slot, each group in order: one call per slot on a cluster. */
function bySlot(slots: readonly number[]): number[][] {
  const groups = new Map<number, number[]>();
  slots.forEach((slot, i) => {
    const group = groups.get(slot);
    if (group) group.push(i);
    else groups.set(slot, [i]);
  });
  return [...groups.values()];
}
