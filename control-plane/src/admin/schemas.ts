/**
 * What the admin API accepts: the zod schemas its handlers validate bodies and queries
 * with. They are also what `/v1/openapi.json` describes (admin/openapi.ts reads them
 * through the operation table, admin/operations.ts), so the document cannot drift
 * from the validation. Answers are described in admin/responses.ts.
 */
import { z } from "zod";
import { isCidr } from "../tenants/validation.ts";

export { ApplyRequest } from "../apply/spec.ts";

const Limits = z
  .object({
    requestsPerSecond: z.number().positive().max(1e6).nullable(),
    burst: z.number().int().positive().max(1e7).nullable(),
    monthlyRequests: z.number().int().positive().nullable(),
    concurrency: z.number().int().positive().max(1e6).nullable(),
    maxBodyBytes: z.number().int().nonnegative().nullable(),
  })
  .partial()
  .strict()
  .meta({ id: "LimitsPatch", description: "Overrides of the plan's limits; null is unlimited." });

const Settings = z
  .object({
    allowedIps: z.array(z.string().refine(isCidr, "must be an IPv4 or IPv6 address or CIDR range")).max(1000),
    branding: z
      .object({
        displayName: z.string().min(1).max(200),
        logoUrl: z
          .string()
          .url()
          .max(2000)
          .refine((u) => /^https?:/.test(u), "must be http(s)"),
        primaryColor: z.string().regex(/^#[0-9a-fA-F]{6}$/, "must be #rrggbb"),
      })
      .partial()
      .strict(),
  })
  .partial()
  .strict()
  .meta({ id: "SettingsPatch" });

export const listTenants = z.object({
  limit: z.coerce.number().int().min(1).max(1_000).default(1_000),
  after: z.string().min(1).max(100).optional(),
  // Filters for the console's search: a substring of the slug or name, and a status.
  q: z.string().min(1).max(100).optional(),
  status: z.enum(["active", "suspended"]).optional(),
});

export const createTenant = z
  .object({ slug: z.string().min(1).max(40), name: z.string().min(1).max(200), plan: z.string().optional() })
  .strict();

export const patchTenant = z
  .object({
    status: z.enum(["active", "suspended"]),
    plan: z.string(),
    limits: Limits,
    features: z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,63}$/), z.boolean()),
    settings: Settings,
  })
  .partial()
  .strict();

export const database = z.object({ server: z.string().min(3).max(300), database: z.string().min(1).max(63) }).strict();
export const upstreams = z.object({ urls: z.array(z.string().max(2000)).min(1).max(64) }).strict();
export const hostname = z.object({ hostname: z.string().min(1).max(300) }).strict();

export const key = z
  .object({
    name: z.string().max(200).optional(),
    expiresAt: z.string().datetime({ offset: true }).optional(),
    // The key's own rate limit, validated like the tenant's (Limits); without it the
    // key's bucket uses the tenant's numbers.
    limits: z
      .object({
        requestsPerSecond: z.number().positive().max(1e6),
        burst: z.number().int().positive().max(1e7).nullable().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export const user = z.object({ email: z.string().email().max(320) }).strict();

/**
 * Filters of the audit trail and the change log (audit/routes.ts): `action` only for
 * changes; `decision`, `reason`, `requestId` only for decisions.
 */
export const auditQuery = z
  .object({
    decision: z.enum(["allow", "refuse"]).optional(),
    reason: z
      .string()
      .regex(/^[a-z_]{1,64}$/)
      .optional(),
    since: z.string().datetime({ offset: true }).optional(),
    until: z.string().datetime({ offset: true }).optional(),
    requestId: z.string().min(1).max(200).optional(),
    action: z.string().min(1).max(200).optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
    cursor: z.string().max(200).optional(),
  })
  .strict();
export type AuditQuery = z.infer<typeof auditQuery>;

/** `GET /v1/explain` (explain/index.ts): `key` is a full API key or its displayed prefix. */
export const explainQuery = z
  .object({
    host: z.string().min(1).max(300),
    key: z.string().min(1).max(200).optional(),
    session: z.string().min(1).max(2000).optional(),
    ip: z.string().min(1).max(100).optional(),
  })
  .strict();
export type ExplainQuery = z.infer<typeof explainQuery>;

const DAY_S = 86_400;

/** `POST /v1/tenants/:tenant/context-key/rotate` (tenants/context-key.ts); an empty body is `{}`. */
export const rotateContextKey = z
  .object({
    overlapSeconds: z
      .number()
      .int()
      .min(0)
      .max(30 * DAY_S)
      .optional(),
  })
  .strict();

/** `GET /v1/tls/ask` (domains/tls-ask.ts): the name a TLS terminator is about to get a certificate for. */
export const tlsAskQuery = z.object({ domain: z.string() });

/** `GET /v1/tenants/:tenant/usage/hourly` (usage/history.ts). */
export const usageHourlyQuery = z.object({
  hours: z.coerce
    .number()
    .int()
    .min(1)
    .max(24 * 31)
    .default(24),
});
