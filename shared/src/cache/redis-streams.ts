/**
 * The Redis store's durable streams (the audit trail's buffer; `StreamStore`): bounded
 * appends, optionally confirmed by replicas (WAIT), consumer-group reads on a
 * connection of their own when they block, acknowledgements and claims. Apart from
 * `redis-store.ts` because it keeps state of its own (the groups made, the blocking
 * connection) that no other command uses.
 */
import type { Redis } from "ioredis";
import type { CircuitBreaker } from "../breaker/index.ts";
import type { WriteLedger } from "./ledger.ts";
import { connect, disconnect, type RedisConnection } from "./redis-connection.ts";
import type { Scripted } from "./redis-scripts.ts";
import type { StreamEntry, StreamReadOptions } from "./store.ts";

type RawEntry = [string, string[] | null];

function entriesOf(raw: RawEntry[]): StreamEntry[] {
  const out: StreamEntry[] = [];
  for (const [id, fields] of raw) {
    // A deleted entry still listed as pending comes back without fields.
    out.push({ id, data: fields && fields[0] === "e" ? (fields[1] as string) : "" });
  }
  return out;
}

export interface RedisStreamsOptions {
  /** The store's command client (the scripts defined), and its breaker. */
  redis: Scripted;
  breaker: CircuitBreaker;
  connection: RedisConnection;
  prefix: string;
  ledger: WriteLedger | null;
  streamReplicas: number;
  replicaWaitMs: number;
}

export class RedisStreams {
  readonly #redis: Scripted;
  readonly #breaker: CircuitBreaker;
  readonly #connection: RedisConnection;
  readonly #prefix: string;
  readonly #ledger: WriteLedger | null;
  readonly #streamReplicas: number;
  /** How long a stream append waits for its replicas: within the command timeout, so a slow replica is not taken for a dead Redis. */
  readonly #replicaWaitMs: number;
  readonly #groups = new Set<string>();
  #blocking: Redis | null = null;

  constructor(o: RedisStreamsOptions) {
    this.#redis = o.redis;
    this.#breaker = o.breaker;
    this.#connection = o.connection;
    this.#prefix = o.prefix;
    this.#ledger = o.ledger;
    this.#streamReplicas = o.streamReplicas;
    this.#replicaWaitMs = o.replicaWaitMs;
  }

  #call<T>(fn: () => Promise<T>): Promise<T> {
    return this.#breaker.run(fn);
  }

  async append(stream: string, payloads: string[], maxLen: number): Promise<number> {
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

  async read(stream: string, o: StreamReadOptions): Promise<StreamEntry[]> {
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

  async ack(stream: string, group: string, ids: string[]): Promise<void> {
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

  async claim(stream: string, group: string, consumer: string, minIdleMs: number, count: number): Promise<StreamEntry[]> {
    const key = this.#prefix + stream;
    await this.#ensureGroup(this.#redis, key, group);
    const reply = (await this.#call(() =>
      this.#redis.call("XAUTOCLAIM", key, group, consumer, minIdleMs, "0-0", "COUNT", count),
    )) as [string, RawEntry[], string[]?];
    return entriesOf(reply[1]);
  }

  length(stream: string): Promise<number> {
    return this.#call(() => this.#redis.xlen(this.#prefix + stream));
  }

  close(): void {
    if (this.#blocking) disconnect(this.#blocking);
    this.#blocking = null;
  }
}
