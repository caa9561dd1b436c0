/**
 * Per-tenant limits on the request path, after the policy allowed the request:
 *
 * - rate: GCRA buckets per tenant and, for API-key traffic, per key (with the key's
 *   own `limits` when it has them, else the tenant's `requestsPerSecond` and `burst`,
 *   which the tenant's bucket then always reaches first), decided together with the monthly quota
 *   by one atomic script in the shared store (one round trip, Redis' clock), so the
 *   limits hold across every router sharing that Redis;
 * - monthly quota: `monthlyRequests` allowed requests per UTC calendar month,
 *   counted in the same script;
 * - concurrency: `concurrency` requests in flight per tenant, counted in this
 *   router's memory. It is a per-router limit on purpose: a global in-flight count
 *   would need a store write when each request ends and would leak slots when a
 *   router dies mid-request; a per-router count is exact, free and self-healing.
 *   With N routers a tenant may have up to N × concurrency requests in flight.
 *
 * When the store fails (Redis unreachable or slow), the limiter does not refuse and
 * does not guess a route: for `FALLBACK_MS` it decides rates with an in-process
 * GCRA of the same parameters (so each router enforces the tenant's whole limit on
 * its own share of the traffic) and does not enforce the monthly quota (its counter
 * lives in Redis). Visible as `portcullis_limiter_degraded` (1 while local) and
 * `portcullis_limiter_store_errors_total`. Headers follow
 * draft-ietf-httpapi-ratelimit-headers (RateLimit-Policy and RateLimit, §3–4) and
 * RFC 9110 §10.2.3 (Retry-After, delay-seconds).
 */
import {
  type Admission,
  LIMIT_KEYS,
  MemoryStore,
  msToNextPeriod,
  periodOf,
  type RateCheck,
  type Store,
} from "@portcullis/shared";
import type { KeyLimits, TenantRecord } from "@portcullis/shared";
import type { RouterMetrics } from "../ops/index.ts";

export { UsageMeter } from "./usage.ts";
export { BRANDING_PATH, brandedRefusalPage, brandingJson, HTML_HEADERS, isBranded, wantsHtml } from "./branding.ts";

/** How long the limiter stays local after a store failure before trying the store again. */
export const FALLBACK_MS = 1_000;

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
}

interface Bucket {
  emissionIntervalMs: number;
  burst: number;
  /** The RateLimit-Policy item (draft-ietf-httpapi-ratelimit-headers §3) and its name. */
  policy: string;
  name: string;
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
  return { emissionIntervalMs: 1000 / rps, burst, policy: `"${name}";q=${burst};w=${window}`, name };
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

export class Limiter {
  readonly #store: Store;
  readonly #local = new MemoryStore();
  readonly #metrics: RouterMetrics | undefined;
  readonly #now: () => number;
  readonly #inFlight = new Map<string, number>();
  #degradedUntil = 0;
  #period = "";
  #periodEnds = 0;

  constructor(options: LimiterOptions) {
    this.#store = options.store;
    this.#metrics = options.metrics;
    this.#now = options.now ?? Date.now;
  }

  /** True while rates are decided locally because the store failed. */
  get degraded(): boolean {
    return this.#now() < this.#degradedUntil;
  }

  /**
   * Takes a concurrency slot for the tenant (release it with `release` when the
   * exchange ends, whatever happens), then checks rate and quota.
   */
  async check(tenant: TenantRecord, keyId: string | undefined, keyLimits: KeyLimits | null = null): Promise<LimitOutcome> {
    const max = tenant.limits.concurrency;
    if (max !== null) {
      const n = this.#inFlight.get(tenant.id) ?? 0;
      if (n >= max) {
        return { ok: false, reason: "concurrency_limited", headers: { "retry-after": "1" } };
      }
      this.#inFlight.set(tenant.id, n + 1);
    }
    const outcome = await this.#rateAndQuota(tenant, keyId, keyLimits);
    if (!outcome.ok && max !== null) this.release(tenant.id);
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

  async #rateAndQuota(tenant: TenantRecord, keyId: string | undefined, keyLimits: KeyLimits | null): Promise<LimitOutcome> {
    const { rate } = compile(tenant);
    const keyRate = keyId === undefined ? null : keyBucket(keyLimits, rate);
    const monthly = tenant.limits.monthlyRequests;
    if (rate === null && keyRate === null && monthly === null) return { ok: true, headers: null };

    const now = this.#now();
    if (now >= this.#periodEnds) {
      this.#period = periodOf(now);
      this.#periodEnds = now + msToNextPeriod(now);
    }
    // `buckets[i]` describes `rates[i]`, so the store's answer can name its policy.
    const rates: RateCheck[] = [];
    const buckets: Bucket[] = [];
    if (rate !== null) {
      rates.push({ key: LIMIT_KEYS.tenantRate(tenant.id), emissionIntervalMs: rate.emissionIntervalMs, burst: rate.burst });
      buckets.push(rate);
    }
    if (keyRate !== null && keyId !== undefined) {
      rates.push({ key: LIMIT_KEYS.keyRate(keyId), emissionIntervalMs: keyRate.emissionIntervalMs, burst: keyRate.burst });
      buckets.push(keyRate);
    }
    const quota =
      monthly === null
        ? null
        : {
            key: LIMIT_KEYS.quota(tenant.id, this.#period),
            limit: monthly,
            ttlMs: this.#periodEnds - now + QUOTA_TTL_MARGIN_MS,
          };

    let answer: Admission;
    if (now < this.#degradedUntil) answer = await this.#localAdmit(rates);
    else {
      try {
        answer = await this.#store.admit(rates, quota);
        this.#metrics?.limiterDegraded.set(0);
      } catch {
        this.#degradedUntil = now + FALLBACK_MS;
        this.#metrics?.limiterStoreErrors.inc();
        this.#metrics?.limiterDegraded.set(1);
        answer = await this.#localAdmit(rates);
      }
    }

    if (answer.ok) {
      const b = buckets[answer.bucket ?? 0];
      if (b === undefined) return { ok: true, headers: null };
      return {
        ok: true,
        headers: { "ratelimit-policy": b.policy, ratelimit: `"${b.name}";r=${answer.remaining};t=${seconds(answer.resetMs)}` },
      };
    }
    if (answer.code === "rate") {
      const b = (buckets[answer.bucket ?? 0] ?? buckets[0]) as Bucket;
      const wait = seconds(answer.retryAfterMs);
      return {
        ok: false,
        reason: "rate_limited",
        headers: { "retry-after": String(wait), "ratelimit-policy": b.policy, ratelimit: `"${b.name}";r=0;t=${wait}` },
      };
    }
    const wait = seconds(this.#periodEnds - now);
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

  #localAdmit(rates: RateCheck[]): Promise<Admission> {
    this.#metrics?.limiterLocalDecisions.inc();
    return this.#local.admit(rates, null);
  }

  async close(): Promise<void> {
    await this.#local.close();
  }
}
