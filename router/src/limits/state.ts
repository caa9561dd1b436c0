/**
 * What the limiter holds: per bucket-set (a tenant's traffic without a key, or one
 * key's: the buckets and quota such a request needs together) its lease, a remembered
 * refusal, the rate this router sees and the fetches in flight; and, for the whole
 * router, the table of sets, the store and the fallback's state. The limiter's modules
 * (`lease.ts`, `local.ts`, `refund.ts`, `sets.ts`) share the one `LimiterState` its
 * `Limiter` holds.
 */
import { MemoryStore, type QuotaCheck, type RateCheck, type Store } from "@portcullis/shared";
import type { Logger } from "pino";
import type { RouterMetrics } from "../ops/index.ts";
import { AdmitBatcher } from "./batch.ts";
import type { Bucket } from "./compile.ts";
import type { LimitOutcome } from "./outcome.ts";
import { QuotaPeriod } from "./quota.ts";

export interface LimiterOptions {
  store: Store;
  metrics?: RouterMetrics;
  now?: () => number;
  /** Told once when limits go local (the store failed) and once when they come back. */
  log?: Pick<Logger, "warn" | "info">;
}

export type Waiter = (outcome: LimitOutcome) => void;

/** One `admit` in flight: the requests waiting for it, at most `want`. */
export interface Fetch {
  want: number;
  waiters: Waiter[];
}

/** A lease granted while the current one still had requests left: it waits its turn. */
export interface NextLease {
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
export interface BucketSet {
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
  /** A lease fetched ahead (see `prefetch` in `lease.ts`), used once the current one is spent or expired. */
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

  /**
   * What the store had left for the set after its last answer (the tightest bucket's
   * room and the quota's, 0 after a refusal), and when: sparse traffic is admitted
   * ahead of the store's count only while this is far above what one request takes
   * (`ahead.ts`).
   */
  headroom: number;
  headroomAt: number;
  /** Requests admitted ahead and not yet counted by the store, and how many of them a charge in flight carries. */
  owed: number;
  charging: number;

  /** The fetch in flight that requests may still join. */
  open: Fetch | null;
  fetching: number;
  /** Local time of the last store answer: the table is kept in this order. */
  touched: number;
  /** Replaced or forgotten: what its fetches grant beyond their waiters goes back at once. */
  dead: boolean;
}

/** The limiter's state for the whole router, built once by `Limiter`. */
export interface LimiterState {
  readonly store: Store;
  /** The in-process GCRA that decides while the store is out (`local.ts`). */
  readonly local: MemoryStore;
  readonly admits: AdmitBatcher;
  readonly metrics: RouterMetrics | undefined;
  readonly admitCalls: { inc(): void } | undefined;
  readonly refundCalls: { inc(): void } | undefined;
  readonly now: () => number;
  readonly log: Pick<Logger, "warn" | "info"> | undefined;
  /** Bucket-sets by key id, or tenant id for traffic without a key; oldest answer first. */
  readonly sets: Map<string, BucketSet>;
  /**
   * Sets holding leased requests (a current lease, or one fetched ahead): the sweep
   * visits these, and gives each lease back at its expiry, instead of walking every
   * set the router knows.
   */
  readonly leased: Set<BucketSet>;
  /** Sets with requests admitted ahead, to be charged to the store together (`ahead.ts`). */
  readonly owing: Set<BucketSet>;
  /** Tenants with a request admitted ahead and not yet charged (one at a time each). */
  readonly aheadTenants: Set<string>;
  /** The last store refusal this router saw per tenant (any of its sets); kept `HEADROOM_MS`. */
  readonly tenantRefusedAt: Map<string, number>;
  chargeTimer: NodeJS.Timeout | null;
  /** Store calls (fetches with their settling, refunds) not yet finished: `close` waits for them. */
  readonly pending: Set<Promise<void>>;
  readonly quotaPeriod: QuotaPeriod;
  /** Rates are decided locally until then (`local.ts`). */
  degradedUntil: number;
  /** Limits went local and have not been decided by the store since: one log line each way. */
  outage: boolean;
}

export function createState(options: LimiterOptions): LimiterState {
  return {
    store: options.store,
    local: new MemoryStore(),
    admits: new AdmitBatcher(options.store),
    metrics: options.metrics,
    admitCalls: options.metrics?.limiterStoreCalls.labels("admit"),
    refundCalls: options.metrics?.limiterStoreCalls.labels("refund"),
    now: options.now ?? Date.now,
    log: options.log,
    sets: new Map(),
    leased: new Set(),
    owing: new Set(),
    aheadTenants: new Set(),
    tenantRefusedAt: new Map(),
    chargeTimer: null,
    pending: new Set(),
    quotaPeriod: new QuotaPeriod(),
    degradedUntil: 0,
    outage: false,
  };
}

/** A store answer for the set: the table (kept in order of last answer) moves it to the end. */
export function markAnswered(s: LimiterState, set: BucketSet, now: number): void {
  if (set.dead) return;
  set.touched = now;
  s.sets.delete(set.id);
  s.sets.set(set.id, set);
}
