/**
 * Sparse traffic admitted ahead of the store's count. A set seen once every few
 * seconds (with 100,000 tenants, each sees a request every ~20 s) never reuses a
 * lease, so each of its requests would wait for its own store round trip. Instead,
 * when all of these hold, the request is admitted at once and charged to the store
 * afterwards, with every other charge due, in one batched call within `CHARGE_MS`:
 *   - the set's previous request on this router came at least `PREFETCH_GAP_MS`
 *     before (sparse: steady traffic keeps using leases, and waits for them);
 *   - its leases hold more than one request (`maxLease` ≥ 2: a burst of 20 or more
 *     and a quota of 2,000 or more; smaller buckets stay exact, a round trip each);
 *   - the store's last answer for the set, within `HEADROOM_MS`, left at least
 *     `HEADROOM_LEASES` × `maxLease` requests (the least of half the smallest burst, a
 *     two-hundredth of the quota and 5,000) in every bucket and the quota;
 *   - no request of the tenant (of any of its sets: its traffic without a key, each
 *     key's, which share its bucket and quota) is owed on this router, and the set's
 *     last answer is newer than the last refusal this router saw for the tenant.
 * The charge is a forced admit (`Store.admit` with `force`): counted whatever room is
 * left, so a bucket repays it and the quota's count includes it. When it fits, the
 * request was within the limit after all; when it refuses, the request passed beyond the limit
 * (`portcullis_limiter_over_admitted_total`), the refusal is remembered as any other,
 * and none of the tenant's sets is admitted ahead on this router again until a store
 * answer newer than that refusal shows that much room again. Hence the
 * bound: across N routers, at most N requests per tenant beyond its buckets each time
 * they run dry from that threshold, and at most N beyond its monthly quota at any time. See
 * docs/limits.md "Sparse traffic".
 */
import type { Admission } from "@portcullis/shared";
import { storeAnswered, storeFailed } from "./local.ts";
import { allowed, type LimitOutcome, rememberRefusal, seconds } from "./outcome.ts";
import { type BucketSet, type LimiterState, markAnswered } from "./state.ts";

/** Requests admitted ahead are charged to the store together, at most this long after. */
export const CHARGE_MS = 50;

/** "Far above": the store's last answer left at least this many leases' worth. */
export const HEADROOM_LEASES = 5;

/**
 * A store answer older than this says nothing about the set's headroom (the bound
 * does not depend on it: it keeps a set forgotten and met again from using an answer
 * of another hour). The limiter keeps a set this long without traffic (`IDLE_MS`).
 */
export const HEADROOM_MS = 120_000;

/**
 * The request of a sparse set admitted now, to be charged later; null when the set
 * must ask the store first (the caller then fetches as usual).
 */
export function admitAhead(s: LimiterState, set: BucketSet, gap: number, gapMin: number, now: number): LimitOutcome | null {
  if (
    set.owed > 0 ||
    set.maxLease < 2 ||
    gap < gapMin ||
    now - set.headroomAt > HEADROOM_MS ||
    set.headroom < HEADROOM_LEASES * set.maxLease ||
    // A tenant's sets (its traffic without a key, each key's) share its bucket and
    // quota: one of them at a time owes, and none goes ahead on a view older than the
    // last refusal this router saw for the tenant.
    s.aheadTenants.has(set.tenantId) ||
    set.headroomAt <= (s.tenantRefusedAt.get(set.tenantId) ?? Number.NEGATIVE_INFINITY)
  )
    return null;
  set.owed = 1;
  s.aheadTenants.add(set.tenantId);
  s.metrics?.limiterAhead.inc();
  s.owing.add(set);
  if (s.chargeTimer === null) {
    s.chargeTimer = setTimeout(() => chargeOwed(s), CHARGE_MS);
    s.chargeTimer.unref();
  }
  return allowed(set.bucket, set.headroom - 1, set.reset);
}

/**
 * A store answer for the set: what it had left, for the next `admitAhead`, and (while
 * no lease holds them) the bucket and reset its headers name.
 */
export function noteHeadroom(s: LimiterState, set: BucketSet, answer: Admission, now: number): void {
  if (!answer.ok) {
    set.headroom = 0;
    refusedFor(s, set.tenantId, now);
  } else {
    let room = set.rates.length === 0 ? Number.POSITIVE_INFINITY : answer.remaining;
    if (set.monthly !== null) room = Math.min(room, set.monthly - answer.used);
    set.headroom = room;
    if (set.tokens === 0) {
      set.bucket = set.buckets[answer.bucket ?? 0];
      set.reset = `;t=${seconds(answer.resetMs)}`;
    }
  }
  set.headroomAt = now;
}

/** A store refusal for one of the tenant's sets: kept in time order, oldest first (the sweep drops the old). */
function refusedFor(s: LimiterState, tenantId: string, now: number): void {
  s.tenantRefusedAt.delete(tenantId);
  s.tenantRefusedAt.set(tenantId, now);
}

/** Sends every charge due, each as one admit of the batch (`AdmitBatcher`). */
export function chargeOwed(s: LimiterState): void {
  if (s.chargeTimer !== null) clearTimeout(s.chargeTimer);
  s.chargeTimer = null;
  const now = s.now();
  for (const set of s.owing) {
    const n = set.owed - set.charging;
    if (n > 0) charge(s, set, n, now);
  }
  s.owing.clear();
}

function charge(s: LimiterState, set: BucketSet, n: number, now: number): void {
  set.charging += n;
  const quota = set.monthly === null ? null : s.quotaPeriod.check(set.tenantId, set.monthly, now);
  s.admitCalls?.inc();
  // Forced: the requests passed already, so the store counts them even where they did not fit.
  const done = s.admits.admit(set.rates, quota, n, true).then(
    (answer) => {
      storeAnswered(s);
      settle(s, set, n, answer);
    },
    (error: unknown) => {
      // Not counted by the store: the limits are local now (`local.ts`).
      storeFailed(s, error);
      set.owed -= n;
      set.charging -= n;
      set.headroom = 0;
      s.aheadTenants.delete(set.tenantId);
    },
  );
  s.pending.add(done);
  void done.finally(() => s.pending.delete(done));
}

function settle(s: LimiterState, set: BucketSet, n: number, answer: Admission): void {
  set.owed -= n;
  set.charging -= n;
  const at = s.now();
  noteHeadroom(s, set, answer, at);
  markAnswered(s, set, at);
  s.aheadTenants.delete(set.tenantId);
  const granted = answer.ok ? Math.min(answer.granted ?? 1, n) : 0;
  if (granted < n) {
    s.metrics?.limiterOverAdmitted.inc(n - granted);
    set.headroom = 0;
    refusedFor(s, set.tenantId, at);
  }
  if (answer.ok) return;
  // Refused: remembered as a fetch's refusal is, so the next requests are refused here.
  rememberRefusal(set, answer, at);
}
