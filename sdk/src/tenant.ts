/**
 * The verified tenant: the one value the rest of the SDK trusts. Only this package
 * makes one, after verifying a router signature (`verify`) or a job envelope
 * (`runForTenant`); it is frozen and branded in a private WeakSet, so an object with
 * the same fields built by app code (or parsed from a request body) is not a tenant
 * to `withTenant`. The brand is a guard against mistakes, not against code running in
 * the same process, which can do anything.
 */
import type { TenantContext } from "./context/index.ts";

/** A tenant's database binding, as the router signs it in `x-tenant-db` (`<server>/<database>`). */
export interface DatabaseBinding {
  /** `host:port` of the tenant's dedicated database server. */
  readonly server: string;
  readonly database: string;
  /** `<server>/<database>`: the key of connection pools (`tenantDatabases`). */
  readonly binding: string;
}

export const AUTH_KINDS = ["hostname", "api-key", "session"] as const;
export type AuthKind = (typeof AUTH_KINDS)[number];

export interface Tenant {
  readonly id: string;
  readonly slug: string;
  readonly database: DatabaseBinding;
  /** Feature flags enabled for the tenant (`x-tenant-features`). */
  readonly features: readonly string[];
  /** How the router identified the tenant. */
  readonly auth: AuthKind;
  /** The user of a verified session, else null. */
  readonly userId: string | null;
  /** The id of a verified API key, else null. */
  readonly keyId: string | null;
  /** The router's request id (carried into jobs enqueued for the request). */
  readonly requestId: string | null;
  /** What vouched for this tenant: a router signature, or a job envelope. */
  readonly source: "request" | "job";
}

const VERIFIED = new WeakSet<object>();

/** True when `value` is a tenant this package verified. */
export function isVerifiedTenant(value: unknown): value is Tenant {
  return typeof value === "object" && value !== null && VERIFIED.has(value);
}

/** Parse `<server>/<database>`; null when malformed. */
export function parseBinding(value: string | undefined): DatabaseBinding | null {
  if (value === undefined) return null;
  const slash = value.indexOf("/");
  if (slash <= 0 || slash === value.length - 1) return null;
  return { server: value.slice(0, slash), database: value.slice(slash + 1), binding: value };
}

export interface TenantFields {
  id: string;
  slug: string;
  db: string;
  auth: string;
  features: string;
  userId: string | null;
  keyId: string | null;
  requestId: string | null;
}

/** The fields a tenant is made of, from the verified context headers. */
export function fieldsOfContext(context: TenantContext): TenantFields {
  return {
    id: context["x-tenant-id"] ?? "",
    slug: context["x-tenant-slug"] ?? "",
    db: context["x-tenant-db"] ?? "",
    auth: context["x-tenant-auth"] ?? "",
    features: context["x-tenant-features"] ?? "",
    userId: context["x-user-id"] || null,
    keyId: context["x-tenant-key-id"] || null,
    requestId: context["x-request-id"] || null,
  };
}

/** The fields of a tenant, to carry it elsewhere (a job envelope). */
export function fieldsOfTenant(tenant: Tenant): TenantFields {
  return {
    id: tenant.id,
    slug: tenant.slug,
    db: tenant.database.binding,
    auth: tenant.auth,
    features: tenant.features.join(","),
    userId: tenant.userId,
    keyId: tenant.keyId,
    requestId: tenant.requestId,
  };
}

/**
 * A verified tenant from fields whose signature was checked by the caller; null when
 * a field the router always sets is missing or malformed (a signature over an
 * incomplete context is still not a usable tenant).
 */
export function mintTenant(fields: TenantFields, source: Tenant["source"]): Tenant | null {
  const database = parseBinding(fields.db);
  if (!fields.id || !fields.slug || database === null) return null;
  if (!(AUTH_KINDS as readonly string[]).includes(fields.auth)) return null;
  const tenant: Tenant = Object.freeze({
    id: fields.id,
    slug: fields.slug,
    database: Object.freeze(database),
    features: Object.freeze(fields.features === "" ? [] : fields.features.split(",")),
    auth: fields.auth as AuthKind,
    userId: fields.userId,
    keyId: fields.keyId,
    requestId: fields.requestId,
    source,
  });
  VERIFIED.add(tenant);
  return tenant;
}
