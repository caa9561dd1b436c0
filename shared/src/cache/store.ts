/**
 * The shared store: Redis in production, an in-process implementation when every
 * service runs in one process. Both give the same semantics, tested by one suite.
 */
export type SetMode = "authoritative" | "fill";

/** One GCRA bucket: one request costs one emission interval; `burst` requests fit at once. */
export interface RateCheck {
  key: string;
  emissionIntervalMs: number;
  burst: number;
}

/** The arguments of one `admit`, for `admitMany`. */
export interface AdmitCall {
  rates: readonly RateCheck[];
  quota: QuotaCheck | null;
  want?: number;
  /** Consume `want` whatever the answer (see `Store.admit`). */
  force?: boolean;
}

/** A monthly request counter and its limit. */
export interface QuotaCheck {
  key: string;
  limit: number;
  ttlMs: number;
  /**
   * The counter's name before this one (LEGACY_LIMIT_KEYS): on one Redis, an admit
   * that finds no counter at `key` starts from this one's count and removes it.
   */
  legacyKey?: string;
}

/**
 * The answer of `admit`: allowed (`granted` requests, with the tightest bucket's
 * remaining requests and the milliseconds until it is full again, both after the
 * granted requests, and the quota used including them), or refused by a bucket
 * (`rate`, with when one request would fit) or by the quota.
 * `bucket` is the index in `rates` of the tightest bucket (allowed) or of the one
 * that makes the caller wait longest (refused), so the caller can name its policy;
 * optional so that other implementations stay valid (absent: the first bucket).
 * `granted` (1 ≤ granted ≤ want) is optional for the same reason (absent: 1).
 */
export type Admission =
  | { ok: true; remaining: number; resetMs: number; used: number; bucket?: number; granted?: number }
  | { ok: false; code: "rate"; retryAfterMs: number; bucket?: number }
  | { ok: false; code: "quota"; used: number };

/** One entry of a durable stream: its id (assigned by the store) and payload. */
export interface StreamEntry {
  id: string;
  data: string;
}

export interface StreamReadOptions {
  /** Consumer-group name (created on first use, reading from the stream's start). */
  group: string;
  /** This reader's name within the group. */
  consumer: string;
  count: number;
  /** How long to wait for new entries when there are none (0: do not wait). */
  blockMs: number;
  /**
   * `true`: re-read the entries delivered to this consumer and not yet acknowledged
   * (after a failed write); `false`: read entries never delivered to the group.
   */
  pending: boolean;
}

export interface Store {
  readonly kind: "redis" | "memory";
  /** Keys live on several Redis nodes (a cluster): multi-key steps stay within one hash tag. */
  readonly sharded?: boolean;
  get(key: string): Promise<string | null>;
  /**
   * Several `get`s in one round trip, the values in the keys' order (null: none). Optional
   * so that other implementations stay valid: without it, callers read one at a time.
   */
  getMany?(keys: readonly string[]): Promise<(string | null)[]>;
  /**
   * Store `value` (JSON with a numeric `v`) unless the stored entry is newer.
   * `authoritative` writes (the control plane) win ties; `fill` writes (a router
   * caching what it read) only replace strictly older entries.
   */
  setIfNewer(key: string, value: string, version: number, ttlMs: number, mode: SetMode): Promise<boolean>;
  del(...keys: string[]): Promise<void>;
  publish(channel: string, message: string): Promise<void>;
  /** `onReset` runs when the subscription was interrupted: messages may have been lost. */
  subscribe(channel: string, onMessage: (message: string) => void, onReset: () => void): Promise<() => Promise<void>>;
  ping(): Promise<boolean>;
  /** Generic cell rate limiter; returns allowed and when to retry. See limits. */
  gcra(
    key: string,
    emissionIntervalMs: number,
    burst: number,
    nowMs: number,
  ): Promise<{ allowed: boolean; retryAfterMs: number; remaining: number }>;
  /** Increment a counter, setting its expiry on first use; returns the new value. */
  incr(key: string, by: number, ttlMs: number): Promise<number>;
  /**
   * Rate buckets and a quota decided together, atomically and in one round trip, for
   * up to `want` requests at once (default 1): it grants n = the least of `want`, the
   * quota's room and every bucket's room (a GCRA bucket's room is how many emission
   * intervals fit before it would refuse: `floor((now - max(tat, now)) / interval) +
   * burst`), and consumes exactly n from each bucket and the quota. When n would be 0
   * nothing is consumed and the answer is the refusal a single request gets.
   * Redis decides on its own clock, so routers' clocks do not matter.
   *
   * With `force` (a charge for requests already admitted), exactly `want` is consumed
   * from every bucket and the quota whatever their room — a bucket borrows from its
   * future, the quota counts past its limit — and the answer is still the refusal
   * that many requests would have got, or the grant.
   */
  admit(rates: readonly RateCheck[], quota: QuotaCheck | null, want?: number, force?: boolean): Promise<Admission>;
  /**
   * Several `admit`s in one round trip, decided in order, each exactly as `admit`
   * would (each atomic; together one atomic step in Redis, on one clock). Optional so
   * that other implementations stay valid: without it, callers admit one at a time.
   */
  admitMany?(calls: readonly AdmitCall[]): Promise<Admission[]>;
  /**
   * Gives back `n` requests granted by `admit` and not used (a router's unused lease):
   * each bucket's theoretical arrival time moves back n intervals, never before now
   * (a bucket cannot hold more than its burst), and the quota counter goes down by n,
   * never below 0; keys that no longer exist are left alone. Atomic, one round trip.
   */
  refund(rates: readonly RateCheck[], quota: QuotaCheck | null, n: number): Promise<void>;
  /**
   * Add to integer fields of a counter hash (usage batches); atomic per call. `units`:
   * what the increments stand for in the caller's terms (requests, for usage), as a
   * change of Redis master counts them at risk; default, one per field.
   */
  addCounters(key: string, increments: Record<string, number>, units?: number): Promise<void>;
  /** Read and delete a counter hash in one atomic step (so no increment is lost or counted twice). */
  takeCounters(key: string): Promise<Record<string, number>>;
  /**
   * The first step of a crash-safe collection: a batch left at `claimKey` by an
   * earlier collection that did not finish (in any process) is answered as it is;
   * else the counter hash at `key` becomes the batch at `claimKey`, named `batch`.
   * Null when there is nothing to collect. Atomic, one round trip.
   */
  claimCounters(key: string, claimKey: string, batch: string): Promise<CounterBatch | null>;
  /** The last step: drop the batch at `claimKey` if it is still `batch` (applied). */
  releaseCounters(claimKey: string, batch: string): Promise<void>;
  close(): Promise<void>;
}

/** A claimed batch of counters (see `claimCounters`). */
export interface CounterBatch {
  batch: string;
  counters: Record<string, number>;
}

/**
 * Durable streams (the audit trail's buffer), offered by both stores. A separate
 * interface so that other Store implementations (test doubles, wrappers) stay valid;
 * `hasStreams` tells whether a store offers them.
 */
export interface StreamStore {
  /**
   * Appends the payloads unless the stream would then hold more than `maxLen`
   * entries; returns how many were appended (the first ones, in order). Never trims
   * unread entries.
   */
  streamAppend(stream: string, payloads: string[], maxLen: number): Promise<number>;
  streamRead(stream: string, options: StreamReadOptions): Promise<StreamEntry[]>;
  /** Acknowledge and delete entries once their consumer has stored them. */
  streamAck(stream: string, group: string, ids: string[]): Promise<void>;
  /** Take over entries another consumer was given but has not acknowledged for `minIdleMs`. */
  streamClaim(stream: string, group: string, consumer: string, minIdleMs: number, count: number): Promise<StreamEntry[]>;
  /** Entries in the stream (unacknowledged ones; acknowledged ones are deleted). */
  streamLength(stream: string): Promise<number>;
}

export function hasStreams<S extends object>(store: S): store is S & StreamStore {
  return (
    typeof (store as Partial<StreamStore>).streamAppend === "function" &&
    typeof (store as Partial<StreamStore>).streamRead === "function"
  );
}
