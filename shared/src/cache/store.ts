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

/** A monthly request counter and its limit. */
export interface QuotaCheck {
  key: string;
  limit: number;
  ttlMs: number;
}

/**
 * The answer of `admit`: allowed (with the tightest bucket's remaining requests and
 * the milliseconds until it is full again, and the quota used including this
 * request), or refused by a bucket (`rate`, with when to retry) or by the quota.
 */
export type Admission =
  | { ok: true; remaining: number; resetMs: number; used: number }
  | { ok: false; code: "rate"; retryAfterMs: number }
  | { ok: false; code: "quota"; used: number };

export interface Store {
  readonly kind: "redis" | "memory";
  get(key: string): Promise<string | null>;
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
   * Rate buckets and a quota decided together, atomically and in one round trip:
   * every bucket must allow and the quota must have room, else nothing is consumed.
   * Redis decides on its own clock, so routers' clocks do not matter.
   */
  admit(rates: readonly RateCheck[], quota: QuotaCheck | null): Promise<Admission>;
  /** Add to integer fields of a counter hash (usage batches); atomic per call. */
  addCounters(key: string, increments: Record<string, number>): Promise<void>;
  /** Read and delete a counter hash in one atomic step (so no increment is lost or counted twice). */
  takeCounters(key: string): Promise<Record<string, number>>;
  close(): Promise<void>;
}
