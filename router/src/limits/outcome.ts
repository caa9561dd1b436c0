/**
 * What the limiter answers (`LimitOutcome`) and its headers, per
 * draft-ietf-httpapi-ratelimit-headers (RateLimit-Policy and RateLimit, §3–4) and
 * RFC 9110 §10.2.3 (Retry-After, delay-seconds). Outcomes that do not vary are built
 * once; a bucket-set's refusal is remembered and rebuilt only when its delay changes.
 */
import type { Admission } from "@portcullis/shared";
import type { Bucket } from "./compile.ts";
import { QUOTA_DENIAL_MS, type QuotaPeriod } from "./quota.ts";
import type { BucketSet } from "./state.ts";

export type LimitOutcome =
  | { ok: true; headers: Record<string, string> | null }
  | {
      ok: false;
      reason: "rate_limited" | "quota_exceeded" | "concurrency_limited";
      headers: Record<string, string>;
    };

export const UNLIMITED: LimitOutcome = Object.freeze({ ok: true, headers: null });
export const CONCURRENCY_LIMITED: LimitOutcome = Object.freeze({
  ok: false,
  reason: "concurrency_limited",
  headers: Object.freeze({ "retry-after": "1" }),
});

/** delay-seconds: whole seconds, rounded up, at least 1. */
export function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/** An admitted request: the tightest bucket's policy and what is left of it (none: no headers). */
export function allowed(bucket: Bucket | undefined, remaining: number, reset: string): LimitOutcome {
  if (bucket === undefined) return UNLIMITED;
  return { ok: true, headers: { "ratelimit-policy": bucket.policy, ratelimit: bucket.item + remaining + reset } };
}

export function rateRefusal(b: Bucket, wait: number): LimitOutcome {
  return {
    ok: false,
    reason: "rate_limited",
    headers: { "retry-after": String(wait), "ratelimit-policy": b.policy, ratelimit: `${b.item}0;t=${wait}` },
  };
}

export function quotaRefusal(monthly: number | null, wait: number): LimitOutcome {
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

/**
 * The store refused the set: refused locally from now on, until the store's retry time
 * (rate) or for `QUOTA_DENIAL_MS` (quota).
 */
export function rememberRefusal(set: BucketSet, answer: Admission & { ok: false }, now: number): void {
  if (answer.code === "rate") {
    set.deniedUntil = now + answer.retryAfterMs;
    set.deniedBy = set.buckets[answer.bucket ?? 0] ?? (set.buckets[0] as Bucket);
  } else {
    set.deniedUntil = now + QUOTA_DENIAL_MS;
    set.deniedBy = null;
  }
  set.denied = null;
}

/** The remembered refusal, rebuilt only when its delay-seconds change. */
export function refusal(set: BucketSet, now: number, period: QuotaPeriod): LimitOutcome {
  const b = set.deniedBy;
  if (b !== null) {
    const wait = seconds(set.deniedUntil - now);
    if (set.denied === null || set.deniedWait !== wait) {
      set.deniedWait = wait;
      set.denied = rateRefusal(b, wait);
    }
    return set.denied;
  }
  const wait = seconds(period.msLeft(now));
  if (set.denied === null || set.deniedWait !== wait) {
    set.deniedWait = wait;
    set.denied = quotaRefusal(set.monthly, wait);
  }
  return set.denied;
}
