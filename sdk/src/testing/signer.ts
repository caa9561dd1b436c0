/**
 * A test signer: signs requests exactly as the router does, with a given tenant
 * context key, so an app's tests can call it directly (no router) with valid, forged,
 * stale or misdirected contexts. For tests only: in production only the router holds
 * the keys that sign, and an app's key should not leave the app.
 */
import { randomBytes } from "node:crypto";
import {
  CONTEXT_FIELDS,
  formatContextKey,
  parseContextKey,
  SIGNATURE_HEADER,
  signContext,
  type TenantContext,
} from "../context/index.ts";
import type { AuthKind, Tenant } from "../tenant.ts";
import { createVerifier } from "../verify/core.ts";

/** The tenant a test request claims to come from. */
export interface TestTenant {
  id: string;
  slug: string;
  /** `<server>/<database>`. */
  db: string;
  auth?: AuthKind;
  features?: string[];
  userId?: string;
  keyId?: string;
}

export interface SignOptions {
  /** The tenant's context key (`pctx_…`). */
  key: string;
  tenant: TestTenant;
  method?: string;
  host: string;
  /** Path and query. */
  target: string;
  /** Signing time (default now): an old one makes a stale signature. */
  timestamp?: number;
  requestId?: string;
}

/** The context headers the router would send, `host` and the signature included. */
export function signedHeaders(options: SignOptions): Record<string, string> {
  const parsed = parseContextKey(options.key);
  if (parsed === null) throw new TypeError("signedHeaders: key must be a pctx_<version>_<key> context key");
  const t = options.tenant;
  const context: TenantContext = {
    "x-tenant-id": t.id,
    "x-tenant-slug": t.slug,
    "x-tenant-db": t.db,
    "x-tenant-auth": t.auth ?? "hostname",
    "x-tenant-features": (t.features ?? []).join(","),
    "x-request-id": options.requestId ?? `req_${randomBytes(8).toString("hex")}`,
    "x-forwarded-for": "127.0.0.1",
    "x-forwarded-host": options.host,
    "x-forwarded-proto": "http",
  };
  if (t.keyId) context["x-tenant-key-id"] = t.keyId;
  if (t.userId) context["x-user-id"] = t.userId;
  const request = { method: options.method ?? "GET", host: options.host, target: options.target };
  const headers: Record<string, string> = { host: options.host };
  for (const field of CONTEXT_FIELDS) if (context[field] !== undefined) headers[field] = context[field] as string;
  headers[SIGNATURE_HEADER] = signContext(context, request, [parsed], options.timestamp ?? Date.now());
  return headers;
}

/** A verified tenant for a test, made the only way there is: signing a request and verifying it. */
export function verifiedTenant(key: string, tenant: TestTenant): Tenant {
  const host = `${tenant.slug}.test`;
  const headers = signedHeaders({ key, tenant, host, target: "/" });
  const outcome = createVerifier({ keys: key })({ method: "GET", url: "/", headers });
  if (!outcome.ok) throw new Error(`verifiedTenant: ${outcome.code}`);
  return outcome.tenant;
}

/** A random context key, for tests that need one of their own. */
export function randomContextKey(version = 1): string {
  return formatContextKey(version, randomBytes(32));
}
