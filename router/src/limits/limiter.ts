/**
 * The `Limiter`: per-tenant limits on the request path, after the policy allowed the
 * request:
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
 * Rate and quota are taken from the store in leases (`lease.ts`), decided in this
 * router's memory while the store is out (`local.ts`); this class holds the
 * concurrency count and the sweep that gives expired leases back.
 */
import type { KeyLimits, TenantRecord } from "@portcullis/shared";
import { compile, keyBucket } from "./compile.ts";
import { chargeOwed, HEADROOM_MS } from "./ahead.ts";
import { admit, LEASE_MS, promote } from "./lease.ts";
import { CONCURRENCY_LIMITED, type LimitOutcome, UNLIMITED } from "./outcome.ts";
import { forget, setFor } from "./sets.ts";
import { createState, type LimiterOptions, type LimiterState } from "./state.ts";

/** How often expired leases are refunded and idle bucket-sets forgotten. */
const SWEEP_MS = LEASE_MS / 2;

/**
 * A bucket-set without a store answer for this long is forgotten (its lease refunded).
 * Long enough that a tenant seen every minute or two keeps what the store last said
 * of its room, which admits its next request ahead (`ahead.ts`); the table is bounded
 * by `MAX_SETS` whatever this is.
 */
export const IDLE_MS = 120_000;

/** Idle sets forgotten per sweep at most, so that no sweep holds the event loop long. */
const FORGET_PER_SWEEP = 1_000;

export class Limiter {
  readonly #s: LimiterState;
  readonly #inFlight = new Map<string, number>();
  readonly #timer: NodeJS.Timeout;

  constructor(options: LimiterOptions) {
    this.#s = createState(options);
    this.#timer = setInterval(() => this.sweep(), SWEEP_MS);
    this.#timer.unref();
  }

  /** True while rates are decided locally because the store failed. */
  get degraded(): boolean {
    return this.#s.now() < this.#s.degradedUntil;
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
    const set = this.#s.sets.get(id);
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

    const s = this.#s;
    const now = s.now();
    return admit(s, setFor(s, tenant.id, keyId, rate, keyRate, monthly, now), now);
  }

  /**
   * Refunds expired leases and forgets bucket-sets idle for `IDLE_MS`. Only the sets
   * holding a lease are checked for expiry (`leased`), and the table, in order of last
   * store answer, is walked only as far as its idle sets: a sweep costs what it does,
   * not the number of sets known (with 100,000 of them, walking all took 3–12 ms of
   * the event loop every sweep).
   */
  sweep(): void {
    const s = this.#s;
    const now = s.now();
    for (const set of s.leased) {
      if (now >= set.expiresAt) promote(s, set, now);
      if (set.tokens === 0 && set.next === null) s.leased.delete(set);
    }
    // A refusal older than any usable answer no longer matters (`ahead.ts`).
    for (const [tenant, at] of s.tenantRefusedAt) {
      if (at > now - HEADROOM_MS) break;
      s.tenantRefusedAt.delete(tenant);
    }
    let forgotten = 0;
    for (const set of s.sets.values()) {
      // A slice per sweep (under 1 ms): 100,000 sets idle at once go over 100 sweeps.
      if (set.touched > now - IDLE_MS || forgotten >= FORGET_PER_SWEEP) break;
      if (set.fetching === 0 && set.owed === 0) {
        forget(s, set);
        forgotten++;
      }
    }
  }

  /** Requests admitted ahead of the store's count and not yet charged to it (tests). */
  owed(id: string): number {
    return this.#s.sets.get(id)?.owed ?? 0;
  }

  /** Sends the charges due now, and resolves when the store calls under way (fetches, charges, refunds) have finished. */
  async settled(): Promise<void> {
    chargeOwed(this.#s);
    const pending = this.#s.pending;
    while (pending.size > 0) await Promise.allSettled([...pending]);
  }

  /** Charges what was admitted ahead, refunds every lease (after the fetches in flight settle), and stops the sweep. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    chargeOwed(this.#s);
    await this.settled();
    for (const set of [...this.#s.sets.values()]) forget(this.#s, set);
    await this.settled();
    await this.#s.local.close();
  }
}
