/**
 * For the limiter's tests against real stores: tenants whose buckets refill one request
 * every 10 minutes (a test's own duration adds none), and a store that counts the
 * limiter's calls.
 */
import type { Store, TenantRecord } from "@portcullis/shared";
import { tenantRecord } from "./tenant-record.ts";

let seq = 0;

/** A tenant of its own (a fresh id) with that burst and quota, refilling one request per 10 minutes. */
export function slowTenant(burst: number, monthlyRequests: number | null = null, name = "limits"): TenantRecord {
  return { ...tenantRecord({ requestsPerSecond: 1 / 600, burst, monthlyRequests }), id: `ten_${name}${seq++}`, slug: name };
}

/** The store, counting the limiter's admits (each of a batch counts one; what each asked for) and refunds. */
export function countingStore(inner: Store) {
  const s = Object.create(inner) as Store;
  const calls = { admit: 0, refund: 0, forced: 0, wants: [] as number[] };
  s.admit = (rates, quota, want, force) => {
    calls.admit++;
    if (force) calls.forced++;
    calls.wants.push(want ?? 1);
    return inner.admit(rates, quota, want, force);
  };
  // Admits sent together (one round trip) count one each, as alone.
  s.admitMany = (batch) => {
    for (const call of batch) {
      calls.admit++;
      if (call.force) calls.forced++;
      calls.wants.push(call.want ?? 1);
    }
    return (inner.admitMany as NonNullable<Store["admitMany"]>).call(inner, batch);
  };
  s.refund = (rates, quota, n) => {
    calls.refund++;
    return inner.refund(rates, quota, n);
  };
  return { store: s, calls };
}
