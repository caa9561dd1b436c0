/**
 * What the admin API answers, as zod schemas: described in `/v1/openapi.json` and
 * the types of the typed client (admin/client.ts). The handlers build their answers
 * from the services' own types; test/e2e/openapi.test.ts parses live answers with
 * these schemas (nothing stripped, nothing missing), so a drift fails there.
 */
import { z } from "zod";

const time = z.string().meta({ format: "date-time" });

export const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().meta({ description: "Stable code (docs/errors.md)." }),
      message: z.string(),
      requestId: z.string(),
      detail: z.string().optional(),
    }),
  })
  .meta({ id: "Error" });

const Limits = z
  .object({
    requestsPerSecond: z.number().nullable(),
    burst: z.number().nullable(),
    monthlyRequests: z.number().nullable(),
    concurrency: z.number().nullable(),
    maxBodyBytes: z.number().nullable(),
  })
  .meta({ id: "Limits", description: "Effective limits (plan defaults with the tenant's overrides); null is unlimited." });

const Branding = z.object({
  displayName: z.string().optional(),
  logoUrl: z.string().optional(),
  primaryColor: z.string().optional(),
});

const Settings = z.object({
  allowedIps: z.array(z.string()).optional(),
  branding: Branding.optional(),
  contextKey: z
    .object({
      version: z.number(),
      previous: z.object({ version: z.number(), until: z.number() }).nullable(),
    })
    .optional(),
});

export const HostnameStatus = z.enum(["pending", "verified", "failed"]);

export const Tenant = z
  .object({
    id: z.string(),
    slug: z.string(),
    name: z.string(),
    status: z.enum(["active", "suspended"]),
    plan: z.string(),
    limits: Limits,
    features: z.record(z.string(), z.boolean()),
    settings: Settings,
    overrides: z.object({
      limits: z.record(z.string(), z.number().nullable()),
      features: z.record(z.string(), z.boolean()),
    }),
    hostnames: z.array(z.object({ hostname: z.string(), kind: z.enum(["platform", "custom"]), status: HostnameStatus })),
    database: z.object({ server: z.string(), database: z.string() }).nullable(),
    upstreams: z.array(z.string()),
    createdAt: time,
    updatedAt: time,
    version: z.number().meta({ description: "The routing version; the ETag for If-Match." }),
  })
  .meta({ id: "Tenant" });

export const TenantList = z.object({ tenants: z.array(Tenant), next: z.string().optional() });

export const Verification = z.object({ type: z.literal("dns-txt"), name: z.string(), value: z.string() });

export const HostnameClaim = z.object({ hostname: z.string(), status: z.literal("pending"), verification: Verification });

export const HostnameDetail = z
  .object({
    hostname: z.string(),
    kind: z.enum(["platform", "custom"]),
    status: HostnameStatus,
    verification: Verification.nullable().meta({
      description: "The TXT record that proves control; null for the platform subdomain.",
    }),
    createdAt: time,
    verifiedAt: time.nullable(),
    lastCheckedAt: time.nullable(),
    missingSince: time.nullable().meta({ description: "Since when re-verification has not found the record." }),
  })
  .meta({ id: "Hostname" });

export const HostnameList = z.object({ hostnames: z.array(HostnameDetail) });
export const Verified = z.object({ hostname: z.string(), status: z.literal("verified") });

const KeyLimits = z.object({ requestsPerSecond: z.number(), burst: z.number().nullable() }).nullable();

export const CreatedKey = z.object({
  id: z.string(),
  key: z.string().meta({ description: "The secret: shown this once." }),
  prefix: z.string(),
  name: z.string().nullable(),
  expiresAt: time.nullable(),
  limits: KeyLimits,
});

export const ApiKey = z
  .object({
    id: z.string(),
    prefix: z.string(),
    name: z.string().nullable(),
    createdAt: time,
    expiresAt: time.nullable(),
    revokedAt: time.nullable(),
    lastUsedAt: time.nullable(),
    limits: KeyLimits,
    status: z.enum(["active", "revoked", "expired"]),
  })
  .meta({ id: "ApiKey" });

export const KeyList = z.object({ keys: z.array(ApiKey) });
export const User = z.object({ id: z.string(), tenantId: z.string(), email: z.string() });
export const Session = z.object({ id: z.string(), token: z.string(), cookie: z.string(), expiresAt: time });
export const DatabaseBinding = z.object({ server: z.string(), database: z.string() });
export const Upstreams = z.object({ urls: z.array(z.string()) });

export const Usage = z.object({
  period: z.string().meta({ description: "The month, YYYY-MM." }),
  requests: z.number(),
  refused: z.number(),
  bytesIn: z.number(),
  bytesOut: z.number(),
});

export const UsageHourly = z.object({
  hours: z.array(z.object({ start: time, requests: z.number(), refused: z.number() })),
});

export const AuditEvent = z
  .object({
    time,
    requestId: z.string(),
    decision: z.enum(["allow", "refuse"]),
    reason: z.string(),
    tenantId: z.string().nullable(),
    host: z.string(),
    method: z.string(),
    path: z.string(),
    credential: z.string(),
    keyId: z.string().optional(),
    userId: z.string().optional(),
    clientIp: z.string(),
    status: z.number(),
    count: z.number().optional().meta({ description: "An aggregate of refusals under a flood: how many it stands for." }),
  })
  .meta({ id: "AuditEvent" });

export const AuditPage = z.object({ events: z.array(AuditEvent), next: z.string().optional() });

export const Change = z
  .object({
    time,
    actor: z.string(),
    requestId: z.string(),
    action: z.string(),
    tenantId: z.string().nullable(),
    target: z.string().nullable(),
    before: z.unknown(),
    after: z.unknown(),
  })
  .meta({ id: "Change" });

export const ChangePage = z.object({ changes: z.array(Change), next: z.string().optional() });

export const Explanation = z
  .object({
    decision: z.enum(["allow", "refuse"]),
    host: z.string().optional(),
    reason: z.string().optional(),
    status: z.number().optional(),
    code: z.string().optional(),
    rule: z.string().optional(),
    tenantId: z.string().optional(),
    tenant: z.object({ id: z.string(), slug: z.string(), status: z.string(), plan: z.string() }).optional(),
    auth: z.string().optional(),
    keyId: z.string().optional(),
    keyPrefix: z.string().optional(),
    keyLimits: KeyLimits.optional(),
    userId: z.string().optional(),
    binding: z.unknown().optional(),
    upstreams: z.array(z.string()).optional(),
    upstream: z.string().nullable().optional(),
    allowedIps: z.array(z.string()).optional(),
    note: z.string().optional(),
  })
  .meta({ id: "Explanation" });

export const ContextKey = z.object({
  tenantId: z.string(),
  version: z.number(),
  key: z.string(),
  previous: z.object({ version: z.number(), key: z.string(), until: time }).nullable(),
});

const Conflict = z.object({
  kind: z.string(),
  subject: z.string(),
  owners: z.array(z.unknown()),
  message: z.string(),
});

export const ApplyReport = z
  .object({
    dryRun: z.boolean(),
    applied: z.boolean(),
    conflicts: z.array(Conflict),
    changes: z.array(z.object({ action: z.string(), tenant: z.string(), detail: z.string() })),
    verifications: z.array(
      z.object({ tenant: z.string(), hostname: z.string(), type: z.literal("dns-txt"), name: z.string(), value: z.string() }),
    ),
  })
  .meta({ id: "ApplyReport" });

export const TlsAskAnswer = z.object({
  allowed: z.boolean(),
  hostname: z.string().optional(),
  tenantId: z.string().optional(),
  code: z.string().optional(),
  retryAfterSeconds: z.number().optional(),
});
export const Health = z.object({ ok: z.literal(true) });
/** The document itself (`GET /v1/openapi.json`). */
export const OpenApiDocument = z.object({ openapi: z.string() }).passthrough();
