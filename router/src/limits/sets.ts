/**
 * The table of bucket-sets: the set a request belongs to, built on its first request
 * (its store keys and `maxLease`) and rebuilt when its tenant's or key's limits change;
 * a set replaced, idle or evicted is forgotten, its leases refunded.
 */
import { L1_MAX_ENTRIES, LIMIT_KEYS, type RateCheck } from "@portcullis/shared";
import { type Bucket, sameBucket } from "./compile.ts";
import { MAX_LEASE } from "./lease.ts";
import { refund, refundLease } from "./refund.ts";
import type { BucketSet, LimiterState } from "./state.ts";

/**
 * Bucket-sets remembered at most: as many as the router's tenant cache holds tenants,
 * so every tenant it routes keeps its set. Past it, the one answered longest ago is
 * forgotten (its lease refunded). A bound below the tenants in rotation would forget
 * a set on nearly every request, each one rebuilt and its lease refunded to the store.
 */
export const MAX_SETS = L1_MAX_ENTRIES;

/** The request's bucket-set, rebuilt (and its lease refunded) when its parameters changed. */
export function setFor(
  s: LimiterState,
  tenantId: string,
  keyId: string | undefined,
  rate: Bucket | null,
  keyRate: Bucket | null,
  monthly: number | null,
  now: number,
): BucketSet {
  const id = keyId ?? tenantId;
  const found = s.sets.get(id);
  if (found !== undefined) {
    if (found.rate === rate && found.keyRate === keyRate && found.monthly === monthly && found.tenantId === tenantId) {
      return found;
    }
    if (
      found.tenantId === tenantId &&
      found.keyId === keyId &&
      found.monthly === monthly &&
      sameBucket(found.rate, rate) &&
      sameBucket(found.keyRate, keyRate)
    ) {
      // A re-read record with the same numbers: the lease stays valid.
      found.rate = rate;
      found.keyRate = keyRate;
      return found;
    }
    forget(s, found);
  }
  const rates: RateCheck[] = [];
  const buckets: Bucket[] = [];
  if (rate !== null) {
    rates.push({ key: LIMIT_KEYS.tenantRate(tenantId), emissionIntervalMs: rate.emissionIntervalMs, burst: rate.burst });
    buckets.push(rate);
  }
  if (keyRate !== null && keyId !== undefined) {
    rates.push({
      key: LIMIT_KEYS.keyRate(tenantId, keyId),
      emissionIntervalMs: keyRate.emissionIntervalMs,
      burst: keyRate.burst,
    });
    buckets.push(keyRate);
  }
  let maxLease = MAX_LEASE;
  for (const b of buckets) maxLease = Math.min(maxLease, Math.floor(b.burst / 10));
  if (monthly !== null) maxLease = Math.min(maxLease, Math.floor(monthly / 1000));
  const set: BucketSet = {
    id,
    tenantId,
    keyId,
    rate,
    keyRate,
    monthly,
    rates,
    buckets,
    maxLease: Math.max(1, maxLease),
    tokens: 0,
    expiresAt: 0,
    leaseQuota: null,
    bucket: undefined,
    remaining: 0,
    reset: "",
    next: null,
    lastSeen: now,
    deniedUntil: 0,
    deniedBy: null,
    denied: null,
    deniedWait: 0,
    served: 0,
    since: now,
    lastWant: 1,
    headroom: 0,
    headroomAt: 0,
    owed: 0,
    charging: 0,
    open: null,
    fetching: 0,
    touched: now,
    dead: false,
  };
  s.sets.set(id, set);
  if (s.sets.size > MAX_SETS) {
    const oldest = s.sets.values().next().value as BucketSet;
    forget(s, oldest);
  }
  return set;
}

/** Drops a bucket-set (replaced, idle or evicted) and refunds its lease. */
export function forget(s: LimiterState, set: BucketSet): void {
  set.dead = true;
  refundLease(s, set);
  if (set.next !== null) refund(s, set.rates, set.next.quota, set.next.tokens);
  set.next = null;
  s.leased.delete(set);
  if (s.sets.get(set.id) === set) s.sets.delete(set.id);
}
