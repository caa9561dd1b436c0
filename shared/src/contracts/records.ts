/**
 * The records the control plane publishes and the router caches. Every cache value
 * is an envelope `{v, …}` where `v` is the routing version (a Postgres sequence):
 * a newer write always wins over an older one, so a slow reader can never put
 * back a record that a write has replaced (see cache/store.ts, setIfNewer).
 */
import { z } from "zod";

export const TENANT_STATUS = ["active", "suspended"] as const;
export type TenantStatus = (typeof TENANT_STATUS)[number];

export const Limits = z.object({
  requestsPerSecond: z.number().positive().nullable(),
  burst: z.number().int().positive().nullable(),
  monthlyRequests: z.number().int().positive().nullable(),
  concurrency: z.number().int().positive().nullable(),
  maxBodyBytes: z.number().int().nonnegative().nullable(),
});
export type Limits = z.infer<typeof Limits>;

/** An API key's own rate limit (`POST /v1/tenants/:tenant/keys` `limits`). */
export const KeyLimits = z.object({
  requestsPerSecond: z.number().positive(),
  burst: z.number().int().positive().nullable(),
});
export type KeyLimits = z.infer<typeof KeyLimits>;

export const Branding = z.object({
  displayName: z.string().max(200).optional(),
  logoUrl: z.string().url().max(2000).optional(),
  primaryColor: z
    .string()
    .regex(/^#[0-9a-fA-F]{6}$/)
    .optional(),
});
export type Branding = z.infer<typeof Branding>;

export const DatabaseBinding = z.object({ server: z.string(), database: z.string() });
export type DatabaseBinding = z.infer<typeof DatabaseBinding>;

export const TenantRecord = z.object({
  id: z.string(),
  slug: z.string(),
  status: z.enum(TENANT_STATUS),
  plan: z.string(),
  binding: DatabaseBinding.nullable(),
  upstreams: z.array(z.string()),
  limits: Limits,
  features: z.record(z.string(), z.boolean()),
  settings: z.object({ allowedIps: z.array(z.string()), branding: Branding }),
  /**
   * Which of the tenant's context keys sign its forwarded requests (shared/src/crypto/
   * context.ts): the current version, and the previous one until the end of a
   * rotation's overlap (epoch ms). Absent (a tenant whose key never rotated): version 1.
   */
  contextKey: z
    .object({ version: z.number().int().positive(), previous: z.object({ version: z.number(), until: z.number() }).nullable() })
    .optional(),
});
export type TenantRecord = z.infer<typeof TenantRecord>;

export const HostEntry = z.object({ v: z.number(), tenantId: z.string().nullable() });
export type HostEntry = z.infer<typeof HostEntry>;

export const TenantEntry = z.object({ v: z.number(), tenant: TenantRecord.nullable() });
export type TenantEntry = z.infer<typeof TenantEntry>;

/**
 * What the key service says of one API key (cached by the key's SHA-256). A revoked
 * key has `key: null` like an unknown one (so any reader refuses it) and `revoked:
 * true` only so the audit trail can name the reason.
 */
export const KeyEntry = z.object({
  v: z.number(),
  revoked: z.literal(true).optional(),
  key: z
    .object({
      keyId: z.string(),
      tenantId: z.string(),
      expiresAt: z.number().nullable(),
      binding: DatabaseBinding.nullable(),
      // The key's own rate limit. Absent (records written before keys had limits) or
      // null: the key's bucket uses the tenant's requestsPerSecond and burst.
      limits: KeyLimits.nullable().optional(),
    })
    .nullable(),
});
export type KeyEntry = z.infer<typeof KeyEntry>;

/** Session revocation state (cached by session id). */
export const SessionEntry = z.object({
  v: z.number(),
  session: z.object({ tenantId: z.string(), userId: z.string(), revoked: z.boolean(), expiresAt: z.number() }).nullable(),
});
export type SessionEntry = z.infer<typeof SessionEntry>;

/** Published after every write that changes routing: routers drop these entries. */
export const Invalidation = z.object({
  v: z.number(),
  hosts: z.array(z.string()).default([]),
  tenants: z.array(z.string()).default([]),
  keys: z.array(z.string()).default([]),
  sessions: z.array(z.string()).default([]),
});
export type Invalidation = z.infer<typeof Invalidation>;

/** Key service: answer to a host resolution. */
export const ResolveHostResponse = z.object({ host: HostEntry, tenant: TenantEntry.nullable() });
export type ResolveHostResponse = z.infer<typeof ResolveHostResponse>;

/** Key service: verify an API key (the router sends its hash, never the key). */
export const VerifyKeyRequest = z.object({ hash: z.string().regex(/^[0-9a-f]{64}$/) });
export const VerifyKeyResponse = z.object({ entry: KeyEntry, tenant: TenantEntry.nullable() });
export type VerifyKeyResponse = z.infer<typeof VerifyKeyResponse>;

export const SessionStateResponse = SessionEntry;
