/**
 * A real store (Redis) with switches a test can flip for one router: reads that fail
 * (Redis unreachable for lookups) and a subscription that never delivers (an
 * invalidation event lost), without touching the Redis server other files share.
 */
import type { Admission, CounterBatch, QuotaCheck, RateCheck, SetMode, Store } from "@portcullis/shared";

export class ControlledStore implements Store {
  readonly kind: Store["kind"];
  readonly inner: Store;
  /** `get` and `setIfNewer` fail as if Redis were unreachable. */
  failReads = false;
  /** Subscriptions are accepted but never deliver an event. */
  readonly deaf: boolean;

  constructor(inner: Store, options: { deaf?: boolean } = {}) {
    this.inner = inner;
    this.kind = inner.kind;
    this.deaf = options.deaf ?? false;
  }

  get(key: string): Promise<string | null> {
    if (this.failReads) return Promise.reject(new Error("store unreachable"));
    return this.inner.get(key);
  }

  setIfNewer(key: string, value: string, version: number, ttlMs: number, mode: SetMode): Promise<boolean> {
    if (this.failReads) return Promise.reject(new Error("store unreachable"));
    return this.inner.setIfNewer(key, value, version, ttlMs, mode);
  }

  del(...keys: string[]): Promise<void> {
    return this.inner.del(...keys);
  }

  publish(channel: string, message: string): Promise<void> {
    return this.inner.publish(channel, message);
  }

  async subscribe(channel: string, onMessage: (message: string) => void, onReset: () => void) {
    if (this.deaf) return async () => {};
    return this.inner.subscribe(channel, onMessage, onReset);
  }

  ping(): Promise<boolean> {
    return this.failReads ? Promise.resolve(false) : this.inner.ping();
  }

  gcra(key: string, emissionIntervalMs: number, burst: number, nowMs: number) {
    return this.inner.gcra(key, emissionIntervalMs, burst, nowMs);
  }

  incr(key: string, by: number, ttlMs: number): Promise<number> {
    return this.inner.incr(key, by, ttlMs);
  }

  admit(rates: readonly RateCheck[], quota: QuotaCheck | null, want?: number): Promise<Admission> {
    return this.inner.admit(rates, quota, want);
  }

  refund(rates: readonly RateCheck[], quota: QuotaCheck | null, n: number): Promise<void> {
    return this.inner.refund(rates, quota, n);
  }

  addCounters(key: string, increments: Record<string, number>): Promise<void> {
    return this.inner.addCounters(key, increments);
  }

  takeCounters(key: string): Promise<Record<string, number>> {
    return this.inner.takeCounters(key);
  }

  claimCounters(key: string, claimKey: string, batch: string): Promise<CounterBatch | null> {
    return this.inner.claimCounters(key, claimKey, batch);
  }

  releaseCounters(claimKey: string, batch: string): Promise<void> {
    return this.inner.releaseCounters(claimKey, batch);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
