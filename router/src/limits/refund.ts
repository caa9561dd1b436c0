/**
 * Leased requests given back to the shared store: a lease's unused rest at expiry, a
 * grant beyond its waiters for a set already replaced, every lease at `close`. Off the
 * request path: never awaited by a request, failures only counted.
 */
import type { QuotaCheck, RateCheck } from "@portcullis/shared";
import type { BucketSet, LimiterState } from "./state.ts";

/** Gives `n` requests back to the buckets and the quota counter they were taken from. */
export function refund(s: LimiterState, rates: readonly RateCheck[], quota: QuotaCheck | null, n: number): void {
  s.refundCalls?.inc();
  s.metrics?.limiterRefunded.inc(n);
  const done = s.store.refund(rates, quota, n).catch(() => s.metrics?.limiterRefundErrors.inc());
  s.pending.add(done);
  void done.finally(() => s.pending.delete(done));
}

/** Gives the current lease's unused requests back to the store. */
export function refundLease(s: LimiterState, set: BucketSet): void {
  const n = set.tokens;
  set.tokens = 0;
  if (n > 0) refund(s, set.rates, set.leaseQuota, n);
}
