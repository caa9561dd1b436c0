/**
 * A tenant record as the router caches it, for unit tests: active, bound, one
 * upstream, no limits unless given, no features, no allowlist, branding as given.
 */
import type { TenantRecord } from "@portcullis/shared";

export function tenantRecord(
  limits: Partial<TenantRecord["limits"]> = {},
  branding: TenantRecord["settings"]["branding"] = {},
): TenantRecord {
  return {
    id: "ten_1",
    slug: "acme",
    status: "active",
    plan: "free",
    binding: { server: "db:5432", database: "acme" },
    upstreams: ["http://127.0.0.1:1"],
    limits: { requestsPerSecond: null, burst: null, monthlyRequests: null, concurrency: null, maxBodyBytes: null, ...limits },
    features: {},
    settings: { allowedIps: [], branding },
  };
}
