/**
 * The request an upstream receives: the client's headers minus hop-by-hop,
 * Connection-named and spoofable ones (and the credential the router consumed), the
 * Host, a traceparent, and the tenant context signed with the tenant's own key over
 * the method, Host and target too.
 */
import type { IncomingMessage } from "node:http";
import type { contextSigner, TenantContext, TenantRecord } from "@portcullis/shared";
import { withoutSessionCookie } from "../sessions/index.ts";
import { connectionTokens, H, isBlockedRequestHeader } from "./headers.ts";
import { nextTraceparent } from "./trace.ts";

/** A tenant whose context key never rotated signs with version 1. */
const FIRST_CONTEXT_KEY = { version: 1, previous: null } as const;

/** Features enabled for a tenant, as the signed `x-tenant-features` value. */
const featureHeader = new WeakMap<TenantRecord, string>();
function featuresOf(tenant: TenantRecord): string {
  let value = featureHeader.get(tenant);
  if (value === undefined) {
    value = Object.keys(tenant.features)
      .filter((k) => tenant.features[k] === true)
      .sort()
      .join(",");
    featureHeader.set(tenant, value);
  }
  return value;
}

export interface Forwarded {
  tenant: TenantRecord;
  auth: TenantContext["x-tenant-auth"];
  keyId: string | undefined;
  userId: string | undefined;
  requestId: string;
  clientIp: string;
  hostname: string;
  /** The request target (origin form, query included). */
  path: string;
  /** The API key came in Authorization: that header is not passed on. */
  dropAuthorization: boolean;
  /** A session cookie was presented: it is taken out of Cookie (the rest passes). */
  sessionCookie: string | null;
}

/** The upstream request's headers, flat (name, value, …), the signed context last. */
export function upstreamHeaders(
  incoming: IncomingMessage,
  f: Forwarded,
  sign: ReturnType<typeof contextSigner>,
  now: number,
): string[] {
  const raw = incoming.rawHeaders;
  const named = connectionTokens(incoming.headers.connection);
  const headers: string[] = [];
  let traceparent: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (isBlockedRequestHeader(name)) continue;
    const lower = name.toLowerCase();
    if (lower === "traceparent") {
      // A repeated traceparent is invalid (W3C Trace Context §3.2): start a new trace.
      traceparent = traceparent === undefined ? (raw[i + 1] as string) : "";
      continue;
    }
    if (named.length > 0 && named.includes(lower)) continue;
    if (lower === H.authorization && f.dropAuthorization) continue;
    if (lower === H.cookie && f.sessionCookie !== null) {
      const rest = withoutSessionCookie(raw[i + 1] as string, f.sessionCookie);
      if (rest !== "") headers.push(name, rest);
      continue;
    }
    headers.push(name, raw[i + 1] as string);
  }

  const tenant = f.tenant;
  const binding = tenant.binding as { server: string; database: string };
  const context: TenantContext = {
    "x-tenant-id": tenant.id,
    "x-tenant-slug": tenant.slug,
    "x-tenant-db": `${binding.server}/${binding.database}`,
    "x-tenant-auth": f.auth,
    "x-tenant-features": featuresOf(tenant),
    "x-request-id": f.requestId,
    "x-forwarded-for": f.clientIp,
    "x-forwarded-host": f.hostname,
    "x-forwarded-proto": "http",
  };
  if (f.keyId) context["x-tenant-key-id"] = f.keyId;
  if (f.userId) context["x-user-id"] = f.userId;
  headers.push(H.host, f.hostname, "traceparent", nextTraceparent(traceparent));
  for (const name in context) headers.push(name, context[name as keyof TenantContext] as string);
  headers.push(
    H.tenantSignature,
    sign(
      tenant.id,
      tenant.contextKey ?? FIRST_CONTEXT_KEY,
      context,
      { method: incoming.method as string, host: f.hostname, target: f.path },
      now,
    ),
  );
  return headers;
}
