/**
 * API key extraction and verification. A key comes from `Authorization: Bearer pck_…`
 * or `X-API-Key`; two different keys, a repeated header, or a key in the query
 * string make the request ambiguous. Verification goes through the same path for
 * every well-formed key (hash → cache → key service), and every failure maps to
 * one public 401 (see shared/errors).
 */
import { API_KEY_PREFIX, hashApiKey, isWellFormedApiKey } from "@portcullis/shared";
import type { KeyOutcome } from "../policy/index.ts";
import type { Resolver } from "../tenant-cache/index.ts";

export type Extracted =
  | { kind: "none" }
  | { kind: "key"; key: string; fromAuthorization: boolean }
  | { kind: "error"; code: "ambiguous_credentials" | "key_in_query" };

const NONE: Extracted = { kind: "none" };

/**
 * Reads credentials from the raw header list (duplicates are visible there; Node's
 * `headers` object silently keeps the first `authorization`).
 */
export function extractKey(rawHeaders: string[], url: string, requireKey: boolean): Extracted {
  let authorization: string | undefined;
  let apiKey: string | undefined;
  let authCount = 0;
  let apiKeyCount = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 13 && name.toLowerCase() === "authorization") {
      authCount++;
      authorization = rawHeaders[i + 1];
    } else if (name.length === 9 && name.toLowerCase() === "x-api-key") {
      apiKeyCount++;
      apiKey = rawHeaders[i + 1];
    }
  }
  const q = url.indexOf("?");
  if (q !== -1 && url.includes(API_KEY_PREFIX, q)) return { kind: "error", code: "key_in_query" };
  if (authCount > 1 || apiKeyCount > 1) return { kind: "error", code: "ambiguous_credentials" };

  let fromAuth: string | undefined;
  if (authorization !== undefined) {
    const bearer = /^Bearer +(\S+) *$/i.exec(authorization);
    const token = bearer?.[1];
    // A bearer token that is not a Portcullis key belongs to the tenant's app
    // (its own JWT, say) and passes through on tenant hostnames.
    if (token?.startsWith(API_KEY_PREFIX)) fromAuth = token;
    else if (requireKey && apiKey === undefined) fromAuth = token ?? authorization;
  }
  if (fromAuth !== undefined && apiKey !== undefined) {
    if (fromAuth !== apiKey.trim()) return { kind: "error", code: "ambiguous_credentials" };
  }
  if (fromAuth !== undefined) return { kind: "key", key: fromAuth, fromAuthorization: true };
  if (apiKey !== undefined) return { kind: "key", key: apiKey.trim(), fromAuthorization: false };
  return NONE;
}

export async function verifyKey(resolver: Resolver, key: string, now: number): Promise<KeyOutcome> {
  if (!isWellFormedApiKey(key)) return { presented: true, ok: false, code: "key_malformed" };
  const lookup = await resolver.key(hashApiKey(key));
  if (!lookup.ok) return { presented: true, ok: false, code: "unavailable" };
  const entry = lookup.value.key;
  if (entry === null) return { presented: true, ok: false, code: "key_unknown" };
  if (entry.expiresAt !== null && entry.expiresAt <= now) return { presented: true, ok: false, code: "key_expired" };
  const tenant = await resolver.tenant(entry.tenantId);
  if (!tenant.ok) return { presented: true, ok: false, code: "unavailable" };
  return {
    presented: true,
    ok: true,
    keyId: entry.keyId,
    tenantId: entry.tenantId,
    tenant: tenant.tenant,
    binding: entry.binding,
  };
}
