/**
 * The fallback to local decisions. When the store fails (Redis unreachable or slow),
 * the limiter does not refuse and does not guess a route: for `FALLBACK_MS` it decides
 * rates with an in-process GCRA of the same parameters (so each router enforces the
 * tenant's whole limit on its own share of the traffic), without leases, and does not
 * enforce the monthly quota (its counter lives in Redis). Visible as
 * `portcullis_limiter_degraded` (1 while local) and
 * `portcullis_limiter_store_errors_total`.
 */
import type { Bucket } from "./compile.ts";
import { allowed, type LimitOutcome, quotaRefusal, rateRefusal, seconds } from "./outcome.ts";
import type { BucketSet, LimiterState } from "./state.ts";

/** How long the limiter stays local after a store failure before trying the store again. */
export const FALLBACK_MS = 1_000;

/** Degraded: the in-process GCRA decides, request by request, without quota. */
export async function localAdmit(s: LimiterState, set: BucketSet, now: number): Promise<LimitOutcome> {
  s.metrics?.limiterLocalDecisions.inc();
  const answer = await s.local.admit(set.rates, null);
  if (answer.ok) return allowed(set.buckets[answer.bucket ?? 0], answer.remaining, `;t=${seconds(answer.resetMs)}`);
  if (answer.code === "rate") {
    const b = (set.buckets[answer.bucket ?? 0] ?? set.buckets[0]) as Bucket;
    return rateRefusal(b, seconds(answer.retryAfterMs));
  }
  return quotaRefusal(set.monthly, seconds(s.quotaPeriod.msLeft(now)));
}

/** The store answered: limits are decided by it again (said once, after an outage). */
export function storeAnswered(s: LimiterState): void {
  s.metrics?.limiterDegraded.set(0);
  if (s.outage) {
    s.outage = false;
    s.log?.info("rate limits decided by the shared store again");
  }
}

/** The store failed: local decisions for `FALLBACK_MS` (said once per outage). */
export function storeFailed(s: LimiterState, error: unknown): void {
  s.degradedUntil = s.now() + FALLBACK_MS;
  s.metrics?.limiterStoreErrors.inc();
  s.metrics?.limiterDegraded.set(1);
  if (!s.outage) {
    s.outage = true;
    s.log?.warn(
      { err: error },
      "shared store unavailable: rate limits decided in this router's memory (each router enforces the whole limit), monthly quotas not enforced",
    );
  }
}
