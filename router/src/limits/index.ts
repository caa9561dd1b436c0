/**
 * Per-tenant limits on the request path, after the policy allowed the request:
 *
 * - rate: GCRA buckets per tenant and, for API-key traffic, per key (with the key's
 *   own `limits` when it has them, else the tenant's `requestsPerSecond` and `burst`,
 *   which the tenant's bucket then always reaches first), kept with the monthly quota
 *   in the shared store and decided by one atomic script on Redis' clock, so the
 *   limits hold across every router sharing that Redis;
 * - monthly quota: `monthlyRequests` allowed requests per UTC calendar month,
 *   counted in the same script;
 * - concurrency: `concurrency` requests in flight per tenant, counted in this
 *   router's memory. It is a per-router limit on purpose: a global in-flight count
 *   would need a store write when each request ends and would leak slots when a
 *   router dies mid-request; a per-router count is exact, free and self-healing.
 *   With N routers a tenant may have up to N × concurrency requests in flight.
 *
 * Leases. A store round trip per request was the largest cost of the hot path, so
 * the router takes requests from the store in slices: per bucket-set (a tenant's
 * traffic without a key, or one key's: the buckets and quota such a request needs
 * together) `admit` grants up to `want` requests at once, consumed from every bucket
 * and the quota, and the router admits the set's next requests from that lease in
 * memory, synchronously, until it is used up or `LEASE_MS` has passed. Every admitted
 * request was granted by the store, so across all routers no more are admitted than
 * the buckets and the quota allow. What it costs is bounded by the lease size,
 * `maxLease` (a tenth of the smallest burst, a thousandth of the monthly quota,
 * `MAX_LEASE`; at least 1):
 *   - a bucket with a burst under 20 (or a quota under 2000) gets leases of 1: one
 *     round trip per request, exact as without leases;
 *   - a leased request counts when granted and is used up to `LEASE_MS` later, so in
 *     a short window a bucket can pass, above what a per-request GCRA would, the
 *     requests leased and unused when the window starts (≤ maxLease per bucket-set
 *     and router);
 *   - requests leased by one router are unavailable to the others until used or
 *     refunded (at expiry, by the sweep every `SWEEP_MS`): a client spread over
 *     routers can be refused that many requests early, for at most
 *     `LEASE_MS + SWEEP_MS`;
 *   - a router that dies loses its unrefunded leases, at most maxLease requests per
 *     bucket-set: its buckets regain them as they refill, its quota does not.
 * The size follows this router's own rate for the set: `LEASE_MS / 2` of it, at
 * most doubling from one lease to the next (a short burst does not lease a large
 * slice). Requests arriving while a lease is fetched join that fetch, up to its size.
 * For steady traffic the next lease is fetched ahead, when the current one is down to
 * a quarter, within `maxLease` counting what is left, with its own expiry (`#prefetch`).
 * Refusals are remembered too: after a rate refusal the set is refused locally until
 * the store's retry time (no request fits earlier, except one refunded by another
 * router meanwhile: this errs only towards refusing), after a quota refusal for
 * `QUOTA_DENIAL_MS`. See docs/limits.md "Leases".
 *
 * When the store fails (Redis unreachable or slow), the limiter does not refuse and
 * does not guess a route: for `FALLBACK_MS` it decides rates with an in-process
 * GCRA of the same parameters (so each router enforces the tenant's whole limit on
 * its own share of the traffic), without leases, and does not enforce the monthly
 * quota (its counter lives in Redis). Visible as `portcullis_limiter_degraded` (1
 * while local) and `portcullis_limiter_store_errors_total`. Headers follow
 * draft-ietf-httpapi-ratelimit-headers (RateLimit-Policy and RateLimit, §3–4) and
 * RFC 9110 §10.2.3 (Retry-After, delay-seconds).
 */
import {
  type AdmitCall,
  type Admission,
  LEGACY_LIMIT_KEYS,
  LIMIT_KEYS,
  MemoryStore,
  msToNextPeriod,
  periodOf,
  type QuotaCheck,
  type RateCheck,
  type Store,
} from "@portcullis/shared";
import type { KeyLimits, TenantRecord } from "@portcullis/shared";
import type { Logger } from "pino";
import type { RouterMetrics } from "../ops/index.ts";

export { UsageMeter } from "./usage.ts";
export { BRANDING_PATH, brandedRefusalPage, brandingJson, HTML_HEADERS, isBranded, wantsHtml } from "./branding.ts";

/** How long the limiter stays local after a store failure before trying the store again. */
export const FALLBACK_MS = 1_000;

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

/** How often expired leases are refunded and idle bucket-sets forgotten. */
const SWEEP_MS = LEASE_MS / 2;

/** The largest lease, whatever the limits. */
export const MAX_LEASE = 1_000;

/** How long a quota refusal is remembered: quota can come back (refunds, a raised limit). */
export const QUOTA_DENIAL_MS = 1_000;

/** A bucket-set without a store answer for this long is forgotten (its lease refunded). */
const IDLE_MS = 5 * LEASE_MS;

/**
 * A lease is fetched ahead (`#prefetch`) only for a set whose previous request came
 * less than this before: steady traffic that will use it. Sparse traffic (a tenant
 * seen every few seconds) takes a lease when it needs one, as a prefetched lease
 * would mostly expire and be refunded: two store calls instead of one.
 */
export const PREFETCH_GAP_MS = LEASE_MS / 2;

/** Most admits sent in one store call. */
const MAX_BATCH = 256;

interface Queued {
  call: AdmitCall;
  resolve: (answer: Admission) => void;
  reject: (error: unknown) => void;
}

/** Bucket-sets remembered at most; past it, the one answered longest ago is forgotten. */
const MAX_SETS = 100_000;

/** Kept a week past the month's end, so a late router cannot restart the count. */
const QUOTA_TTL_MARGIN_MS = 7 * 24 * 3600 * 1000;

export type LimitOutcome =
  | { ok: true; headers: Record<string, string> | null }
  | {
      ok: false;
      reason: "rate_limited" | "quota_exceeded" | "concurrency_limited";
      headers: Record<string, string>;
    };

export interface LimiterOptions {
  store: Store;
  metrics?: RouterMetrics;
  now?: () => number;
  /** Told once when limits go local (the store failed) and once when they come back. */
  log?: Pick<Logger, "warn" | "info">;
}

interface Bucket {
  emissionIntervalMs: number;
  burst: number;
  /** The RateLimit-Policy item (draft-ietf-httpapi-ratelimit-headers §3) and its name. */
  policy: string;
  name: string;
  /** The RateLimit item up to its remaining count: `"<name>";r=`. */
  item: string;
}

interface Compiled {
  rate: Bucket | null;
}

const compiled = new WeakMap<TenantRecord, Compiled>();
const compiledKeys = new WeakMap<KeyLimits, Bucket>();

function bucketOf(name: string, rps: number, burstSet: number | null): Bucket {
  // No burst set: one second's worth of requests (at least one).
  const burst = burstSet ?? Math.max(1, Math.ceil(rps));
  // The policy's window is the time an empty bucket takes to fill again.
  const window = Math.max(1, Math.ceil(burst / rps));
  return { emissionIntervalMs: 1000 / rps, burst, policy: `"${name}";q=${burst};w=${window}`, name, item: `"${name}";r=` };
}

/** Same parameters and policy: a lease taken for one is valid for the other. */
function sameBucket(a: Bucket | null, b: Bucket | null): boolean {
  return (
    a === b ||
    (a !== null && b !== null && a.emissionIntervalMs === b.emissionIntervalMs && a.burst === b.burst && a.name === b.name)
  );
}

/** The tenant's bucket parameters and policy header, built once per record. */
function compile(tenant: TenantRecord): Compiled {
  let c = compiled.get(tenant);
  if (c === undefined) {
    const rps = tenant.limits.requestsPerSecond;
    c = { rate: rps === null ? null : bucketOf("tenant", rps, tenant.limits.burst) };
    compiled.set(tenant, c);
  }
  return c;
}

/**
 * The key's bucket: its own limits (built once per cached key record), or, for a key
 * without them, the tenant's numbers under the tenant's policy name (as before keys
 * had limits: the tenant's bucket, counting all the tenant's traffic, binds first).
 */
function keyBucket(limits: KeyLimits | null, tenantRate: Bucket | null): Bucket | null {
  if (limits === null) return tenantRate;
  let b = compiledKeys.get(limits);
  if (b === undefined) {
    b = bucketOf("key", limits.requestsPerSecond, limits.burst);
    compiledKeys.set(limits, b);
  }
  return b;
}

function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

const UNLIMITED: LimitOutcome = Object.freeze({ ok: true, headers: null });
const CONCURRENCY_LIMITED: LimitOutcome = Object.freeze({
  ok: false,
  reason: "concurrency_limited",
  headers: Object.freeze({ "retry-after": "1" }),
});

type Waiter = (outcome: LimitOutcome) => void;

/** One `admit` in flight: the requests waiting for it, at most `want`. */
interface Fetch {
  want: number;
  waiters: Waiter[];
}

/** A lease granted while the current one still had requests left: it waits its turn. */
interface NextLease {
  tokens: number;
  expiresAt: number;
  quota: QuotaCheck | null;
  bucket: Bucket | undefined;
  remaining: number;
  reset: string;
}

/**
 * What the limiter holds for one bucket-set: the parameters it was built for, its
 * lease, a remembered refusal, the rate this router sees, and the fetches in flight.
 */
interface BucketSet {
  readonly id: string;
  readonly tenantId: string;
  readonly keyId: string | undefined;
  /** Compared with each request's (by identity, then by value: records are re-read). */
  rate: Bucket | null;
  keyRate: Bucket | null;
  readonly monthly: number | null;
  /** `buckets[i]` describes `rates[i]`, so the store's answer can name its policy. */
  readonly rates: RateCheck[];
  readonly buckets: Bucket[];
  readonly maxLease: number;

  /** The lease: requests granted by the store and not yet used, until `expiresAt`. */
  tokens: number;
  expiresAt: number;
  /** The quota counter the lease was taken from (refunds go back to it). */
  leaseQuota: QuotaCheck | null;
  /** For the headers: the tightest bucket and what the store had left after the lease. */
  bucket: Bucket | undefined;
  remaining: number;
  /** `;t=<seconds until the bucket is full>` as of the lease (not counted down). */
  reset: string;
  /** A lease fetched ahead (see `#prefetch`), used once the current one is spent or expired. */
  next: NextLease | null;
  /** Local time of the set's last request: a prefetch is only worth it for steady traffic. */
  lastSeen: number;

  /** Refused locally until then (rate: the store's retry time; quota: QUOTA_DENIAL_MS). */
  deniedUntil: number;
  deniedBy: Bucket | null;
  /** The refusal last built, and its delay-seconds, reused while they match. */
  denied: LimitOutcome | null;
  deniedWait: number;

  /** Requests admitted with store grants since `since` (the last fetch), and its size. */
  served: number;
  since: number;
  lastWant: number;

  /** The fetch in flight that requests may still join. */
  open: Fetch | null;
  fetching: number;
  /** Local time of the last store answer: the table is kept in this order. */
  touched: number;
  /** Replaced or forgotten: what its fetches grant beyond their waiters goes back at once. */
  dead: boolean;
}

export class Limiter {
  readonly #store: Store;
  readonly #local = new MemoryStore();
  readonly #metrics: RouterMetrics | undefined;
  readonly #admitCalls: { inc(): void } | undefined;
  readonly #refundCalls: { inc(): void } | undefined;
  readonly #now: () => number;
  readonly #inFlight = new Map<string, number>();
  /** Bucket-sets by key id, or tenant id for traffic without a key; oldest answer first. */
  readonly #sets = new Map<string, BucketSet>();
  /**
   * Sets holding a lease fetched ahead: their current lease is older than their last
   * answer, so the sweep's walk in answer order would reach its expiry late.
   */
  readonly #ahead = new Set<BucketSet>();
  #batch: Queued[] = [];
  /** Store calls (fetches with their settling, refunds) not yet finished: `close` waits for them. */
  readonly #pending = new Set<Promise<void>>();
  readonly #timer: NodeJS.Timeout;
  #degradedUntil = 0;
  /** Limits went local and have not been decided by the store since: one log line each way. */
  #outage = false;
  readonly #log: Pick<Logger, "warn" | "info"> | undefined;
  #period = "";
  #periodEnds = 0;

  constructor(options: LimiterOptions) {
    this.#store = options.store;
    this.#metrics = options.metrics;
    this.#admitCalls = options.metrics?.limiterStoreCalls.labels("admit");
    this.#refundCalls = options.metrics?.limiterStoreCalls.labels("refund");
    this.#now = options.now ?? Date.now;
    this.#log = options.log;
    this.#timer = setInterval(() => this.sweep(), SWEEP_MS);
    this.#timer.unref();
  }

  /** True while rates are decided locally because the store failed. */
  get degraded(): boolean {
    return this.#now() < this.#degradedUntil;
  }

  /**
   * Takes a concurrency slot for the tenant (release it with `release` when the
   * exchange ends, whatever happens), then checks rate and quota. Synchronous when
   * this router can decide alone (a lease with requests left, a remembered refusal,
   * no limits); a Promise when it must ask the store.
   */
  check(
    tenant: TenantRecord,
    keyId: string | undefined,
    keyLimits: KeyLimits | null = null,
  ): LimitOutcome | Promise<LimitOutcome> {
    const max = tenant.limits.concurrency;
    if (max !== null) {
      const n = this.#inFlight.get(tenant.id) ?? 0;
      if (n >= max) return CONCURRENCY_LIMITED;
      this.#inFlight.set(tenant.id, n + 1);
    }
    const outcome = this.#rateAndQuota(tenant, keyId, keyLimits);
    if (max === null) return outcome;
    if (outcome instanceof Promise) {
      return outcome.then((o) => {
        if (!o.ok) this.release(tenant.id);
        return o;
      });
    }
    if (!outcome.ok) this.release(tenant.id);
    return outcome;
  }

  release(tenantId: string): void {
    const n = this.#inFlight.get(tenantId);
    if (n === undefined) return;
    if (n <= 1) this.#inFlight.delete(tenantId);
    else this.#inFlight.set(tenantId, n - 1);
  }

  /** Requests this router holds for a tenant right now (tests, metrics). */
  inFlight(tenantId: string): number {
    return this.#inFlight.get(tenantId) ?? 0;
  }

  /** Leased requests this router holds, unused, for a tenant's traffic or a key's (tests). */
  leased(id: string): number {
    const set = this.#sets.get(id);
    return set === undefined ? 0 : set.tokens + (set.next?.tokens ?? 0);
  }

  #rateAndQuota(
    tenant: TenantRecord,
    keyId: string | undefined,
    keyLimits: KeyLimits | null,
  ): LimitOutcome | Promise<LimitOutcome> {
    const { rate } = compile(tenant);
    const keyRate = keyId === undefined ? null : keyBucket(keyLimits, rate);
    const monthly = tenant.limits.monthlyRequests;
    if (rate === null && keyRate === null && monthly === null) return UNLIMITED;

    const now = this.#now();
    const set = this.#setFor(tenant.id, keyId, rate, keyRate, monthly, now);
    if (now < this.#degradedUntil) return this.#localAdmit(set, now);
    const gap = now - set.lastSeen;
    set.lastSeen = now;
    if (set.tokens === 0 || now >= set.expiresAt) this.#promote(set, now);
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
        this.#prefetch(set, now);
      const next = set.next;
      // What the store had left after the latest grant, plus what this router holds.
      const remaining = next === null ? set.remaining + set.tokens : next.remaining + set.tokens + next.tokens;
      return this.#allowed(set.bucket, remaining, set.reset);
    }
    if (now < set.deniedUntil) return this.#refusal(set, now);
    return new Promise<LimitOutcome>((resolve) => this.#enqueue(set, resolve, now));
  }

  /** The request's bucket-set, rebuilt (and its lease refunded) when its parameters changed. */
  #setFor(
    tenantId: string,
    keyId: string | undefined,
    rate: Bucket | null,
    keyRate: Bucket | null,
    monthly: number | null,
    now: number,
  ): BucketSet {
    const id = keyId ?? tenantId;
    const found = this.#sets.get(id);
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
      this.#forget(found);
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
      open: null,
      fetching: 0,
      touched: now,
      dead: false,
    };
    this.#sets.set(id, set);
    if (this.#sets.size > MAX_SETS) {
      const oldest = this.#sets.values().next().value as BucketSet;
      this.#forget(oldest);
    }
    return set;
  }

  /** A request that found no lease: joins the open fetch if it has room, else starts one. */
  #enqueue(set: BucketSet, waiter: Waiter, now: number): void {
    const open = set.open;
    if (open !== null && open.waiters.length < open.want) {
      open.waiters.push(waiter);
      return;
    }
    this.#startFetch(set, { want: this.#want(set, now), waiters: [waiter] }, now);
  }

  /**
   * The lease is nearly spent and the set's traffic is steady: the next one is asked
   * for now, in the background, so that the next requests find it instead of waiting
   * for the store. It is sized as usual, within what the set may hold (`maxLease`,
   * counting what is left of the current lease), and kept apart from the current
   * lease with its own expiry, so no request is admitted more than `LEASE_MS` after
   * the store granted it. Requests that find no lease meanwhile join this fetch.
   */
  #prefetch(set: BucketSet, now: number): void {
    const want = Math.min(this.#want(set, now), set.maxLease - set.tokens);
    if (want <= 0) return;
    set.lastWant = want;
    this.#startFetch(set, { want, waiters: [] }, now);
  }

  /**
   * The current lease is spent or expired: an expired rest goes back to the store,
   * and a lease fetched ahead takes its place (or goes back too, if it expired).
   */
  #promote(set: BucketSet, now: number): void {
    if (set.tokens > 0 && now >= set.expiresAt) this.#refundLease(set);
    const next = set.next;
    if (set.tokens > 0 || next === null) return;
    set.next = null;
    this.#ahead.delete(set);
    if (now >= next.expiresAt) {
      this.#refund(set.rates, next.quota, next.tokens);
      return;
    }
    set.tokens = next.tokens;
    set.expiresAt = next.expiresAt;
    set.leaseQuota = next.quota;
    set.bucket = next.bucket;
    set.remaining = next.remaining;
    set.reset = next.reset;
  }

  #startFetch(set: BucketSet, fetch: Fetch, now: number): void {
    set.open = fetch;
    set.fetching++;
    const done = this.#fetch(set, fetch, now);
    this.#pending.add(done);
    void done.finally(() => this.#pending.delete(done));
  }

  /**
   * The next lease's size: `LEASE_MS / 2` of the rate seen since the last fetch, at
   * most twice the last size (slow start) and `maxLease`. Nothing served since the
   * last fetch: the set's first fetch or one after a refusal (1), or a fetch still in
   * flight and full, so more requests wait than it will bring (as many as it asked
   * for; the window is not restarted, so what it measures is kept).
   */
  #want(set: BucketSet, now: number): number {
    if (set.maxLease === 1) return 1;
    if (set.served === 0) return set.fetching > 0 ? set.lastWant : 1;
    const elapsed = now - set.since;
    const seen = elapsed <= 0 ? set.maxLease : Math.ceil((set.served * (LEASE_MS / 2)) / elapsed);
    const want = Math.max(1, Math.min(seen, set.lastWant * 2, set.maxLease));
    set.served = 0;
    set.since = now;
    set.lastWant = want;
    return want;
  }

  async #fetch(set: BucketSet, fetch: Fetch, now: number): Promise<void> {
    const quota = set.monthly === null ? null : this.#quotaCheck(set.tenantId, set.monthly, now);
    let answer: Admission | null = null;
    try {
      this.#admitCalls?.inc();
      answer = await this.#admit(set.rates, quota, fetch.want);
      this.#metrics?.limiterDegraded.set(0);
      if (this.#outage) {
        this.#outage = false;
        this.#log?.info("rate limits decided by the shared store again");
      }
    } catch (error) {
      this.#degradedUntil = this.#now() + FALLBACK_MS;
      this.#metrics?.limiterStoreErrors.inc();
      this.#metrics?.limiterDegraded.set(1);
      if (!this.#outage) {
        this.#outage = true;
        this.#log?.warn(
          { err: error },
          "shared store unavailable: rate limits decided in this router's memory (each router enforces the whole limit), monthly quotas not enforced",
        );
      }
    }
    set.fetching--;
    if (set.open === fetch) set.open = null;
    const at = this.#now();
    if (answer === null) {
      for (const w of fetch.waiters) void this.#localAdmit(set, at).then(w);
      return;
    }
    if (!set.dead) {
      set.touched = at;
      this.#sets.delete(set.id);
      this.#sets.set(set.id, set);
    }
    if (!answer.ok) {
      if (answer.code === "rate") {
        set.deniedUntil = at + answer.retryAfterMs;
        set.deniedBy = set.buckets[answer.bucket ?? 0] ?? (set.buckets[0] as Bucket);
      } else {
        set.deniedUntil = at + QUOTA_DENIAL_MS;
        set.deniedBy = null;
      }
      set.denied = null;
      for (const w of fetch.waiters) w(this.#refusal(set, at));
      return;
    }
    // A grant answered after a refusal (answers come in order): room came back.
    set.deniedUntil = 0;
    let left = Math.max(1, Math.min(answer.granted ?? 1, fetch.want));
    const bucket = set.buckets[answer.bucket ?? 0];
    const reset = `;t=${seconds(answer.resetMs)}`;
    let served = 0;
    for (; served < fetch.waiters.length && left > 0; served++) {
      left--;
      set.served++;
      (fetch.waiters[served] as Waiter)(this.#allowed(bucket, answer.remaining + left, reset));
    }
    if (left > 0) {
      if (set.dead) this.#refund(set.rates, quota, left);
      else {
        this.#promote(set, at);
        if (set.tokens === 0) {
          set.tokens = left;
          set.expiresAt = at + LEASE_MS;
          set.leaseQuota = quota;
          set.bucket = bucket;
          set.remaining = answer.remaining;
          set.reset = reset;
        } else if (set.next === null) {
          // The current lease still has requests: this one waits behind it.
          set.next = { tokens: left, expiresAt: at + LEASE_MS, quota, bucket, remaining: answer.remaining, reset };
          this.#ahead.add(set);
        } else if (set.next.quota?.key !== quota?.key) {
          // Concurrent fetches across a month's end: not merged, so each refund goes
          // back to the counter it was taken from.
          this.#refund(set.rates, quota, left);
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
    for (let i = served; i < fetch.waiters.length; i++) this.#retry(set, fetch.waiters[i] as Waiter, at);
  }

  /**
   * One admit, sent with the others asked for in the same turn of the event loop in
   * one store round trip (`admitMany`) when the store offers it: many bucket-sets
   * (tenants, keys) renew their leases at once under load, and one script call for
   * all of them costs the router and Redis far less than one call each.
   */
  #admit(rates: readonly RateCheck[], quota: QuotaCheck | null, want: number): Promise<Admission> {
    if (this.#store.admitMany === undefined) return this.#store.admit(rates, quota, want);
    return new Promise((resolve, reject) => {
      this.#batch.push({ call: { rates, quota, want }, resolve, reject });
      if (this.#batch.length === 1) setImmediate(() => this.#sendBatch());
      else if (this.#batch.length >= MAX_BATCH) this.#sendBatch();
    });
  }

  #sendBatch(): void {
    const batch = this.#batch;
    if (batch.length === 0) return;
    this.#batch = [];
    const store = this.#store as Required<Pick<Store, "admitMany">>;
    store.admitMany(batch.map((b) => b.call)).then(
      (answers) => {
        for (let i = 0; i < batch.length; i++) (batch[i] as Queued).resolve(answers[i] as Admission);
      },
      (error: unknown) => {
        for (const b of batch) b.reject(error);
      },
    );
  }

  /** A waiter its fetch could not serve: a lease or a refusal may have come meanwhile. */
  #retry(set: BucketSet, waiter: Waiter, now: number): void {
    if (now < this.#degradedUntil) {
      void this.#localAdmit(set, now).then(waiter);
      return;
    }
    if (set.tokens === 0 || now >= set.expiresAt) this.#promote(set, now);
    if (set.tokens > 0) {
      set.tokens--;
      set.served++;
      waiter(this.#allowed(set.bucket, set.remaining + set.tokens, set.reset));
    } else if (now < set.deniedUntil) waiter(this.#refusal(set, now));
    else this.#enqueue(set, waiter, now);
  }

  #allowed(bucket: Bucket | undefined, remaining: number, reset: string): LimitOutcome {
    if (bucket === undefined) return UNLIMITED;
    return { ok: true, headers: { "ratelimit-policy": bucket.policy, ratelimit: bucket.item + remaining + reset } };
  }

  /** The remembered refusal, rebuilt only when its delay-seconds change. */
  #refusal(set: BucketSet, now: number): LimitOutcome {
    const b = set.deniedBy;
    if (b !== null) {
      const wait = seconds(set.deniedUntil - now);
      if (set.denied === null || set.deniedWait !== wait) {
        set.deniedWait = wait;
        set.denied = {
          ok: false,
          reason: "rate_limited",
          headers: { "retry-after": String(wait), "ratelimit-policy": b.policy, ratelimit: `${b.item}0;t=${wait}` },
        };
      }
      return set.denied;
    }
    this.#periodAt(now);
    const wait = seconds(this.#periodEnds - now);
    if (set.denied === null || set.deniedWait !== wait) {
      set.deniedWait = wait;
      set.denied = this.#quotaRefusal(set.monthly, wait);
    }
    return set.denied;
  }

  #quotaRefusal(monthly: number | null, wait: number): LimitOutcome {
    return {
      ok: false,
      reason: "quota_exceeded",
      headers: {
        "retry-after": String(wait),
        "ratelimit-policy": `"monthly";q=${monthly};w=${wait}`,
        ratelimit: `"monthly";r=0;t=${wait}`,
      },
    };
  }

  #periodAt(now: number): void {
    if (now >= this.#periodEnds) {
      this.#period = periodOf(now);
      this.#periodEnds = now + msToNextPeriod(now);
    }
  }

  #quotaCheck(tenantId: string, limit: number, now: number): QuotaCheck {
    this.#periodAt(now);
    return {
      key: LIMIT_KEYS.quota(tenantId, this.#period),
      limit,
      ttlMs: this.#periodEnds - now + QUOTA_TTL_MARGIN_MS,
      legacyKey: LEGACY_LIMIT_KEYS.quota(tenantId, this.#period),
    };
  }

  /** Degraded: the in-process GCRA decides, request by request, without quota. */
  async #localAdmit(set: BucketSet, now: number): Promise<LimitOutcome> {
    this.#metrics?.limiterLocalDecisions.inc();
    const answer = await this.#local.admit(set.rates, null);
    if (answer.ok) return this.#allowed(set.buckets[answer.bucket ?? 0], answer.remaining, `;t=${seconds(answer.resetMs)}`);
    if (answer.code === "rate") {
      const b = (set.buckets[answer.bucket ?? 0] ?? set.buckets[0]) as Bucket;
      const wait = seconds(answer.retryAfterMs);
      return {
        ok: false,
        reason: "rate_limited",
        headers: { "retry-after": String(wait), "ratelimit-policy": b.policy, ratelimit: `${b.item}0;t=${wait}` },
      };
    }
    this.#periodAt(now);
    return this.#quotaRefusal(set.monthly, seconds(this.#periodEnds - now));
  }

  /** Gives the current lease's unused requests back to the store. */
  #refundLease(set: BucketSet): void {
    const n = set.tokens;
    set.tokens = 0;
    if (n > 0) this.#refund(set.rates, set.leaseQuota, n);
  }

  /** Off the request path: never awaited by a request, failures only counted. */
  #refund(rates: readonly RateCheck[], quota: QuotaCheck | null, n: number): void {
    this.#refundCalls?.inc();
    this.#metrics?.limiterRefunded.inc(n);
    const done = this.#store.refund(rates, quota, n).catch(() => this.#metrics?.limiterRefundErrors.inc());
    this.#pending.add(done);
    void done.finally(() => this.#pending.delete(done));
  }

  /** Drops a bucket-set (replaced, idle or evicted) and refunds its lease. */
  #forget(set: BucketSet): void {
    set.dead = true;
    this.#refundLease(set);
    if (set.next !== null) this.#refund(set.rates, set.next.quota, set.next.tokens);
    set.next = null;
    this.#ahead.delete(set);
    if (this.#sets.get(set.id) === set) this.#sets.delete(set.id);
  }

  /**
   * Refunds expired leases and forgets bucket-sets idle for `IDLE_MS`. The table is in
   * order of last store answer and a lease never outlives its answer by more than
   * `LEASE_MS`, so the walk stops at the first set answered within `LEASE_MS`. A set
   * holding a lease fetched ahead has a current lease older than its last answer: those
   * few are checked apart (`#ahead`), so each lease goes back at its own expiry.
   */
  sweep(): void {
    const now = this.#now();
    for (const set of this.#ahead) if (now >= set.expiresAt) this.#promote(set, now);
    for (const set of this.#sets.values()) {
      if (set.touched > now - LEASE_MS) break;
      if (now >= set.expiresAt) this.#promote(set, now);
      if (set.touched <= now - IDLE_MS && set.fetching === 0) this.#forget(set);
    }
  }

  /** Resolves when the store calls under way (fetches, refunds) have finished. */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  /** Refunds every lease (after the fetches in flight settle) and stops the sweep. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.settled();
    for (const set of [...this.#sets.values()]) this.#forget(set);
    await this.settled();
    await this.#local.close();
  }
}
