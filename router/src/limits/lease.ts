/**
 * Leases: how a request of a bucket-set is admitted. A store round trip per request
 * was the largest cost of the hot path, so the router takes requests from the store in
 * slices: per bucket-set (a tenant's traffic without a key, or one key's: the buckets
 * and quota such a request needs together) `admit` grants up to `want` requests at
 * once, consumed from every bucket and the quota, and the router admits the set's next
 * requests from that lease in memory, synchronously, until it is used up or `LEASE_MS`
 * has passed. Every admitted request was granted by the store, so across all routers
 * no more are admitted than the buckets and the quota allow. What it costs is bounded
 * by the lease size, `maxLease` (a tenth of the smallest burst, a thousandth of the
 * monthly quota, `MAX_LEASE`; at least 1):
 *   - a bucket with a burst under 20 (or a quota under 2000) gets leases of 1: one
 *     round trip per request, exact as without leases;
 *   - a leased request counts when granted and is used up to `LEASE_MS` later, so in
 *     a short window a bucket can pass, above what a per-request GCRA would, the
 *     requests leased and unused when the window starts (≤ maxLease per bucket-set
 *     and router);
 *   - requests leased by one router are unavailable to the others until used or
 *     refunded (at expiry, by the sweep every `SWEEP_MS`, `limiter.ts`): a client
 *     spread over routers can be refused that many requests early, for at most
 *     `LEASE_MS + SWEEP_MS`;
 *   - a router that dies loses its unrefunded leases, at most maxLease requests per
 *     bucket-set: its buckets regain them as they refill, its quota does not.
 * The size follows this router's own rate for the set: `LEASE_MS / 2` of it, at
 * most doubling from one lease to the next (a short burst does not lease a large
 * slice). Requests arriving while a lease is fetched join that fetch, up to its size.
 * For steady traffic the next lease is fetched ahead, when the current one is down to
 * a quarter, within `maxLease` counting what is left, with its own expiry (`prefetch`).
 * Refusals are remembered too: after a rate refusal the set is refused locally until
 * the store's retry time (no request fits earlier, except one refunded by another
 * router meanwhile: this errs only towards refusing), after a quota refusal for
 * `QUOTA_DENIAL_MS`. Sparse traffic, which never reuses a lease, is admitted ahead of
 * the store's count instead (`ahead.ts`). See docs/limits.md "Leases".
 */
import type { Admission } from "@portcullis/shared";
import { admitAhead, noteHeadroom } from "./ahead.ts";
import { localAdmit, storeAnswered, storeFailed } from "./local.ts";
import { allowed, type LimitOutcome, refusal, rememberRefusal, seconds } from "./outcome.ts";
import { refund, refundLease } from "./refund.ts";
import { type BucketSet, type Fetch, type LimiterState, markAnswered, type Waiter } from "./state.ts";

/**
 * How long a lease may be used after the store granted it. A lease is sized for half
 * of it (`LEASE_MS / 2` of the rate observed), so that it normally runs out before it
 * expires: one renewal round trip per 2.5 s of a set's traffic, refunds rare. With
 * leases valid for 1 s, a tenant at 7 requests a second took 0.28 store calls per
 * request (admits and refunds), at 2 s 0.16 (simulated Poisson traffic); the
 * benchmark's 1,000 tenants at a few requests a second each are what 5 s is for.
 * What a lease holds is capped by `maxLease` whatever this is, so a longer lifetime
 * only strands unused requests longer (until expiry and the next sweep).
 */
export const LEASE_MS = 5_000;

/** The largest lease, whatever the limits. */
export const MAX_LEASE = 1_000;

/**
 * A lease is fetched ahead (`prefetch`) only for a set whose previous request came
 * less than this before: steady traffic that will use it. Sparse traffic (a tenant
 * seen every few seconds) takes a lease when it needs one, as a prefetched lease
 * would mostly expire and be refunded: two store calls instead of one.
 */
export const PREFETCH_GAP_MS = LEASE_MS / 2;

/**
 * One request of the set: from its lease (synchronously), a remembered refusal, or a
 * fetch from the store; while the store is out, the local fallback decides.
 */
export function admit(s: LimiterState, set: BucketSet, now: number): LimitOutcome | Promise<LimitOutcome> {
  // Seen even while limits are local, so steady traffic through an outage is not taken
  // for sparse traffic after it (`ahead.ts`).
  const gap = now - set.lastSeen;
  set.lastSeen = now;
  if (now < s.degradedUntil) return localAdmit(s, set, now);
  if (set.tokens === 0 || now >= set.expiresAt) promote(s, set, now);
  if (set.tokens > 0) {
    set.tokens--;
    set.served++;
    if (
      set.tokens <= set.lastWant >> 2 &&
      set.maxLease > 1 &&
      set.next === null &&
      set.fetching === 0 &&
      gap < PREFETCH_GAP_MS &&
      now >= set.deniedUntil
    )
      prefetch(s, set, now);
    const next = set.next;
    // What the store had left after the latest grant, plus what this router holds.
    const remaining = next === null ? set.remaining + set.tokens : next.remaining + set.tokens + next.tokens;
    return allowed(set.bucket, remaining, set.reset);
  }
  if (now < set.deniedUntil) return refusal(set, now, s.quotaPeriod);
  // Sparse traffic with room to spare: admitted now, charged to the store shortly.
  const ahead = admitAhead(s, set, gap, PREFETCH_GAP_MS, now);
  if (ahead !== null) return ahead;
  return new Promise<LimitOutcome>((resolve) => enqueue(s, set, resolve, now));
}

/** A request that found no lease: joins the open fetch if it has room, else starts one. */
function enqueue(s: LimiterState, set: BucketSet, waiter: Waiter, now: number): void {
  const open = set.open;
  if (open !== null && open.waiters.length < open.want) {
    open.waiters.push(waiter);
    return;
  }
  startFetch(s, set, { want: want(set, now), waiters: [waiter] }, now);
}

/**
 * The lease is nearly spent and the set's traffic is steady: the next one is asked
 * for now, in the background, so that the next requests find it instead of waiting
 * for the store. It is sized as usual, within what the set may hold (`maxLease`,
 * counting what is left of the current lease), and kept apart from the current
 * lease with its own expiry, so no request is admitted more than `LEASE_MS` after
 * the store granted it. Requests that find no lease meanwhile join this fetch.
 */
function prefetch(s: LimiterState, set: BucketSet, now: number): void {
  const size = Math.min(want(set, now), set.maxLease - set.tokens);
  if (size <= 0) return;
  set.lastWant = size;
  startFetch(s, set, { want: size, waiters: [] }, now);
}

/**
 * The current lease is spent or expired: an expired rest goes back to the store,
 * and a lease fetched ahead takes its place (or goes back too, if it expired).
 */
export function promote(s: LimiterState, set: BucketSet, now: number): void {
  if (set.tokens > 0 && now >= set.expiresAt) refundLease(s, set);
  const next = set.next;
  if (set.tokens > 0 || next === null) return;
  set.next = null;
  if (now >= next.expiresAt) {
    refund(s, set.rates, next.quota, next.tokens);
    return;
  }
  set.tokens = next.tokens;
  set.expiresAt = next.expiresAt;
  set.leaseQuota = next.quota;
  set.bucket = next.bucket;
  set.remaining = next.remaining;
  set.reset = next.reset;
}

function startFetch(s: LimiterState, set: BucketSet, fetch: Fetch, now: number): void {
  set.open = fetch;
  set.fetching++;
  const done = fetchLease(s, set, fetch, now);
  s.pending.add(done);
  void done.finally(() => s.pending.delete(done));
}

/**
 * The next lease's size: `LEASE_MS / 2` of the rate seen since the last fetch, at
 * most twice the last size (slow start) and `maxLease`. Nothing served since the
 * last fetch: the set's first fetch or one after a refusal (1), or a fetch still in
 * flight and full, so more requests wait than it will bring (as many as it asked
 * for; the window is not restarted, so what it measures is kept).
 */
function want(set: BucketSet, now: number): number {
  if (set.maxLease === 1) return 1;
  if (set.served === 0) return set.fetching > 0 ? set.lastWant : 1;
  const elapsed = now - set.since;
  const seen = elapsed <= 0 ? set.maxLease : Math.ceil((set.served * (LEASE_MS / 2)) / elapsed);
  const size = Math.max(1, Math.min(seen, set.lastWant * 2, set.maxLease));
  set.served = 0;
  set.since = now;
  set.lastWant = size;
  return size;
}

/** One `admit` from the store, and its answer shared out: waiters served, the rest leased. */
async function fetchLease(s: LimiterState, set: BucketSet, fetch: Fetch, now: number): Promise<void> {
  const quota = set.monthly === null ? null : s.quotaPeriod.check(set.tenantId, set.monthly, now);
  let answer: Admission | null = null;
  try {
    s.admitCalls?.inc();
    answer = await s.admits.admit(set.rates, quota, fetch.want);
    storeAnswered(s);
  } catch (error) {
    storeFailed(s, error);
  }
  set.fetching--;
  if (set.open === fetch) set.open = null;
  const at = s.now();
  if (answer === null) {
    for (const w of fetch.waiters) void localAdmit(s, set, at).then(w);
    return;
  }
  noteHeadroom(s, set, answer, at);
  markAnswered(s, set, at);
  if (!answer.ok) {
    rememberRefusal(set, answer, at);
    for (const w of fetch.waiters) w(refusal(set, at, s.quotaPeriod));
    return;
  }
  // A grant answered after a refusal (answers are handed out in the order Redis decided them, batch.ts): room came back.
  set.deniedUntil = 0;
  let left = Math.max(1, Math.min(answer.granted ?? 1, fetch.want));
  const bucket = set.buckets[answer.bucket ?? 0];
  const reset = `;t=${seconds(answer.resetMs)}`;
  let served = 0;
  for (; served < fetch.waiters.length && left > 0; served++) {
    left--;
    set.served++;
    (fetch.waiters[served] as Waiter)(allowed(bucket, answer.remaining + left, reset));
  }
  if (left > 0) {
    if (set.dead) refund(s, set.rates, quota, left);
    else {
      promote(s, set, at);
      if (set.tokens === 0) {
        set.tokens = left;
        s.leased.add(set);
        set.expiresAt = at + LEASE_MS;
        set.leaseQuota = quota;
        set.bucket = bucket;
        set.remaining = answer.remaining;
        set.reset = reset;
      } else if (set.next === null) {
        // The current lease still has requests: this one waits behind it.
        set.next = { tokens: left, expiresAt: at + LEASE_MS, quota, bucket, remaining: answer.remaining, reset };
        s.leased.add(set);
      } else if (set.next.quota?.key !== quota?.key) {
        // Concurrent fetches across a month's end: not merged, so each refund goes
        // back to the counter it was taken from.
        refund(s, set.rates, quota, left);
      } else {
        // Concurrent fetches: merged into the waiting lease, whose older expiry
        // holds for all (the stricter bound).
        set.next.tokens += left;
        set.next.quota = quota;
        set.next.bucket = bucket;
        set.next.remaining = answer.remaining;
        set.next.reset = reset;
      }
    }
  }
  // Granted fewer than were waiting: the others ask again (the store will say).
  for (let i = served; i < fetch.waiters.length; i++) retry(s, set, fetch.waiters[i] as Waiter, at);
}

/** A waiter its fetch could not serve: a lease or a refusal may have come meanwhile. */
function retry(s: LimiterState, set: BucketSet, waiter: Waiter, now: number): void {
  if (now < s.degradedUntil) {
    void localAdmit(s, set, now).then(waiter);
    return;
  }
  if (set.tokens === 0 || now >= set.expiresAt) promote(s, set, now);
  if (set.tokens > 0) {
    set.tokens--;
    set.served++;
    waiter(allowed(set.bucket, set.remaining + set.tokens, set.reset));
  } else if (now < set.deniedUntil) waiter(refusal(set, now, s.quotaPeriod));
  else enqueue(s, set, waiter, now);
}
