/**
 * The synthetic tenant the short benchmarks route to: its own upstream, limits far
 * above any load (the limiter runs on every request but never refuses), one feature.
 */
import type { TenantRecord } from "@portcullis/shared";

export function benchTenant(origin: string, id = "", slug = ""): TenantRecord {
  return {
    id,
    slug,
    status: "active",
    plan: "enterprise",
    binding: slug === "" ? null : { server: `pg-${slug}.internal:5432`, database: slug },
    upstreams: [origin],
    limits: {
      requestsPerSecond: 1_000_000,
      burst: 1_000_000,
      monthlyRequests: null,
      concurrency: 100_000,
      maxBodyBytes: 10_485_760,
    },
    features: { beta: true },
    settings: { allowedIps: [], branding: {} },
  };
}
