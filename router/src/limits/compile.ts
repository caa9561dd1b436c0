/**
 * Tenant and key limits compiled into rate buckets: a bucket's GCRA parameters and
 * its RateLimit-Policy item, built once per cached record (a tenant's, a key's).
 */
import type { KeyLimits, TenantRecord } from "@portcullis/shared";

export interface Bucket {
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
export function sameBucket(a: Bucket | null, b: Bucket | null): boolean {
  return (
    a === b ||
    (a !== null && b !== null && a.emissionIntervalMs === b.emissionIntervalMs && a.burst === b.burst && a.name === b.name)
  );
}

/** The tenant's bucket parameters and policy header, built once per record. */
export function compile(tenant: TenantRecord): Compiled {
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
export function keyBucket(limits: KeyLimits | null, tenantRate: Bucket | null): Bucket | null {
  if (limits === null) return tenantRate;
  let b = compiledKeys.get(limits);
  if (b === undefined) {
    b = bucketOf("key", limits.requestsPerSecond, limits.burst);
    compiledKeys.set(limits, b);
  }
  return b;
}
