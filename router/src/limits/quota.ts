/**
 * The monthly quota's side of the limiter: the UTC month its counters are keyed by
 * (recomputed only when it ends), the counter a lease is taken from, and how long a
 * quota refusal is remembered. The count itself is kept by the shared store, in the
 * same atomic script as the rates (`lease.ts`).
 */
import { LEGACY_LIMIT_KEYS, LIMIT_KEYS, msToNextPeriod, periodOf, type QuotaCheck } from "@portcullis/shared";

/** How long a quota refusal is remembered: quota can come back (refunds, a raised limit). */
export const QUOTA_DENIAL_MS = 1_000;

/** Kept a week past the month's end, so a late router cannot restart the count. */
const QUOTA_TTL_MARGIN_MS = 7 * 24 * 3600 * 1000;

/** The current quota month, as of the last time asked. */
export class QuotaPeriod {
  #period = "";
  #periodEnds = 0;

  /** Milliseconds until the month ends: the wait of a quota refusal. */
  msLeft(now: number): number {
    this.#at(now);
    return this.#periodEnds - now;
  }

  /** The tenant's counter for this month, as the store's admit and refund take it. */
  check(tenantId: string, limit: number, now: number): QuotaCheck {
    this.#at(now);
    return {
      key: LIMIT_KEYS.quota(tenantId, this.#period),
      limit,
      ttlMs: this.#periodEnds - now + QUOTA_TTL_MARGIN_MS,
      legacyKey: LEGACY_LIMIT_KEYS.quota(tenantId, this.#period),
    };
  }

  #at(now: number): void {
    if (now >= this.#periodEnds) {
      this.#period = periodOf(now);
      this.#periodEnds = now + msToNextPeriod(now);
    }
  }
}
