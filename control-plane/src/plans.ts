/**
 * Plans set the default limits and features of a tenant; a tenant's own `limits` and
 * `features` override them field by field. `null` means unlimited.
 */
import type { Limits } from "@portcullis/shared";

export interface Plan {
  limits: Limits;
  features: Record<string, boolean>;
}

const MiB = 1024 * 1024;

export const PLANS = {
  free: {
    limits: { requestsPerSecond: 20, burst: 40, monthlyRequests: 1_000_000, concurrency: 50, maxBodyBytes: 1 * MiB },
    features: { apiAccess: true, customDomains: false, auditExport: false },
  },
  pro: {
    limits: { requestsPerSecond: 200, burst: 400, monthlyRequests: 50_000_000, concurrency: 500, maxBodyBytes: 10 * MiB },
    features: { apiAccess: true, customDomains: true, auditExport: false },
  },
  enterprise: {
    limits: { requestsPerSecond: 2_000, burst: 4_000, monthlyRequests: null, concurrency: 5_000, maxBodyBytes: 100 * MiB },
    features: { apiAccess: true, customDomains: true, auditExport: true },
  },
} as const satisfies Record<string, Plan>;

export type PlanName = keyof typeof PLANS;
export const PLAN_NAMES = Object.keys(PLANS) as PlanName[];
