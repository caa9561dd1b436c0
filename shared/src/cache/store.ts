/**
 * The shared store: Redis in production, an in-process implementation when every
 * service runs in one process. Both give the same semantics, tested by one suite.
 */
export type SetMode = "authoritative" | "fill";

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
  close(): Promise<void>;
}
