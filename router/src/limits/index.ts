/**
 * Per-tenant limits on the request path (rate, monthly quota, concurrency, body size):
 * the public surface of `limits/`. `limiter.ts` is the `Limiter` and the overview;
 * `compile.ts` turns tenant and key limits into buckets; `lease.ts` admits requests
 * from leases taken from the shared store, through `batch.ts` (admits batched per turn
 * of the event loop), `sets.ts` (the bucket-sets) and `refund.ts`; `ahead.ts` admits
 * sparse traffic before the store counts it and charges it after; `local.ts` decides
 * while the store is out; `quota.ts` keeps the quota month; `outcome.ts` builds the
 * answers and their headers; `state.ts` holds the types they share.
 */
export { CHARGE_MS, HEADROOM_LEASES, HEADROOM_MS } from "./ahead.ts";
export { declaredTooLarge } from "./body.ts";
export { LEASE_MS, MAX_LEASE, PREFETCH_GAP_MS } from "./lease.ts";
export { Limiter } from "./limiter.ts";
export { FALLBACK_MS } from "./local.ts";
export type { LimitOutcome } from "./outcome.ts";
export { QUOTA_DENIAL_MS } from "./quota.ts";
export type { LimiterOptions } from "./state.ts";
