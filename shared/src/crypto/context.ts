/**
 * The signed tenant context: the headers the router sets on every forwarded request
 * and the verifier an upstream app uses to trust them.
 *
 * Each tenant has its own context key, derived from the platform's master secret
 * (CONTEXT_SIGNING_SECRET) by HKDF-SHA256 (RFC 5869) over the tenant id and a key
 * version: an app is handed its own tenant's key only (admin API
 * `GET /v1/tenants/:tenant/context-key`), so a compromised app of one tenant can
 * verify its own context but cannot sign another tenant's. Keys rotate by version;
 * during a rotation's overlap the router signs with both the new and the previous
 * key, so an app still holding the previous one keeps verifying.
 *
 * The signature is HMAC-SHA256(tenant key, canonical), where canonical is
 * `v2\n<timestamp ms>\n<METHOD>\n<host>\n<target>\n` followed by every field of
 * CONTEXT_FIELDS, in that order, one per line (an absent field is an empty line).
 * Method, Host and request target (path and query, as sent to the upstream) are
 * covered, so a captured header set cannot be replayed on another path, method or
 * host. Header values and a request target cannot hold a newline (RFC 9110 §5.5,
 * RFC 9112 §3.2), so the encoding is unambiguous.
 *
 * Header: `x-tenant-signature: t=<ms>,k=<version>,s=<hex>[,k=<version>,s=<hex>]`.
 * A key is handed out as `pctx_<version>_<base64url of 32 bytes>`.
 */
import { createHmac, createSecretKey, hkdfSync, type KeyObject, timingSafeEqual } from "node:crypto";

export const CONTEXT_FIELDS = [
  "x-tenant-id",
  "x-tenant-slug",
  "x-tenant-db",
  "x-tenant-auth",
  "x-tenant-key-id",
  "x-user-id",
  "x-tenant-features",
  "x-request-id",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
] as const;
export const SIGNATURE_HEADER = "x-tenant-signature";

export type ContextField = (typeof CONTEXT_FIELDS)[number];
export type TenantContext = Partial<Record<ContextField, string>>;

/** Which context keys of a tenant sign: the current version and, during a rotation, the previous one until `until` (ms). */
export interface ContextKeyState {
  version: number;
  previous: { version: number; until: number } | null;
}

/** What is signed besides the context: the request as the upstream receives it. */
export interface SignedRequest {
  method: string;
  host: string;
  /** Path and query (origin form), exactly as sent upstream. */
  target: string;
}

const KEY_BYTES = 32;
const HKDF_SALT = "portcullis/context-key";
const TOKEN = /^pctx_(\d{1,9})_([A-Za-z0-9_-]{43})$/;

/** The raw key of one tenant and version (HKDF-SHA256 over the master secret). */
export function deriveContextKey(master: string, tenantId: string, version: number): Buffer {
  return Buffer.from(hkdfSync("sha256", master, HKDF_SALT, `${tenantId}\n${version}`, KEY_BYTES));
}

/** The key as handed to the tenant's app: `pctx_<version>_<base64url>`. */
export function contextKeyToken(master: string, tenantId: string, version: number): string {
  return `pctx_${version}_${deriveContextKey(master, tenantId, version).toString("base64url")}`;
}

function parseToken(token: string): { version: number; key: Buffer } | null {
  const m = TOKEN.exec(token);
  if (m === null) return null;
  return { version: Number(m[1]), key: Buffer.from(m[2] as string, "base64url") };
}

function canonical(values: TenantContext, request: SignedRequest, timestamp: number): string {
  let text = `v2\n${timestamp}\n${request.method}\n${request.host}\n${request.target}`;
  for (const field of CONTEXT_FIELDS) text += `\n${values[field] ?? ""}`;
  return text;
}

function mac(key: KeyObject | Buffer, text: string): string {
  return createHmac("sha256", key).update(text).digest("hex");
}

/** One signature header value, with the given tenant keys (current first). */
export function signContext(
  values: TenantContext,
  request: SignedRequest,
  keys: readonly { version: number; key: KeyObject | Buffer }[],
  timestamp: number,
): string {
  const text = canonical(values, request, timestamp);
  let header = `t=${timestamp}`;
  for (const k of keys) header += `,k=${k.version},s=${mac(k.key, text)}`;
  return header;
}

interface TenantKeys {
  version: number;
  current: KeyObject;
  previous: { version: number; key: KeyObject; until: number } | null;
}

/** Bound of the signer's key table (tenants × versions); it starts over when full. */
const MAX_SIGNER_KEYS = 100_000;

/**
 * The router's signer: derives each tenant's keys once (an HKDF and a key import cost
 * tens of microseconds; the HMAC per request a few) and keeps them in a bounded table,
 * so a request pays one HMAC, or two during a rotation's overlap.
 */
export function contextSigner(master: string) {
  const table = new Map<string, TenantKeys>();
  const keyOf = (tenantId: string, version: number) => createSecretKey(deriveContextKey(master, tenantId, version));
  function keysOf(tenantId: string, state: ContextKeyState): TenantKeys {
    let keys = table.get(tenantId);
    const prev = state.previous;
    if (
      keys === undefined ||
      keys.version !== state.version ||
      (prev === null ? keys.previous !== null : keys.previous?.version !== prev.version || keys.previous.until !== prev.until)
    ) {
      if (table.size >= MAX_SIGNER_KEYS) table.clear();
      keys = {
        version: state.version,
        current: keyOf(tenantId, state.version),
        previous: prev === null ? null : { version: prev.version, key: keyOf(tenantId, prev.version), until: prev.until },
      };
      table.set(tenantId, keys);
    }
    return keys;
  }
  return (tenantId: string, state: ContextKeyState, values: TenantContext, request: SignedRequest, timestamp: number) => {
    const keys = keysOf(tenantId, state);
    const text = canonical(values, request, timestamp);
    let header = `t=${timestamp},k=${keys.version},s=${mac(keys.current, text)}`;
    if (keys.previous !== null && timestamp < keys.previous.until)
      header += `,k=${keys.previous.version},s=${mac(keys.previous.key, text)}`;
    return header;
  };
}

export type ContextVerification =
  | { ok: true; context: TenantContext & { "x-tenant-id": string }; timestamp: number; keyVersion: number }
  | { ok: false; code: "missing_signature" | "malformed_signature" | "unknown_key" | "bad_signature" | "stale_signature" };

type HeaderBag = Record<string, string | string[] | undefined> | { get(name: string): string | null };

/** The request an upstream received: Node's `IncomingMessage`, a Web `Request`, or the same fields. */
export interface ReceivedRequest {
  method?: string;
  /** Node: the request target (`/path?query`); Web: an absolute URL. */
  url?: string;
  headers: HeaderBag;
}

/**
 * The keys an app verifies with: its own key (`pctx_…`), several during a rotation,
 * or a function giving the key of a tenant and version (a platform tool holding the
 * master secret: `contextKeysFrom`).
 */
export type ContextKeys = string | readonly string[] | ((tenantId: string, version: number) => string | null);

/** Every tenant's keys, from the master secret: for tools of the platform itself, never for a tenant's app. */
export function contextKeysFrom(master: string): (tenantId: string, version: number) => string {
  return (tenantId, version) => contextKeyToken(master, tenantId, version);
}

function read(headers: HeaderBag, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === "function") {
    return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  }
  const value = (headers as Record<string, string | string[] | undefined>)[name];
  // A repeated context header was not set by the router: treat it as forged.
  return Array.isArray(value) ? "\u0000" : value;
}

function targetOf(url: string): string {
  if (url.startsWith("/")) return url;
  try {
    const u = new URL(url);
    return u.pathname + u.search;
  } catch {
    return url;
  }
}

const SIGNATURE = /^t=(\d{1,16})((?:,k=\d{1,9},s=[0-9a-f]{64}){1,2})$/;

/**
 * Verify the tenant context an upstream received, against the request as received
 * (method, Host, target). `maxAgeMs` bounds replay of a captured request on the same
 * method, host and target (default 5 minutes).
 */
export function verifyTenantContext(
  request: ReceivedRequest,
  keys: ContextKeys,
  options: { maxAgeMs?: number; now?: number } = {},
): ContextVerification {
  const headers = request.headers;
  const signature = read(headers, SIGNATURE_HEADER);
  if (!signature) return { ok: false, code: "missing_signature" };
  const match = SIGNATURE.exec(signature);
  if (!match) return { ok: false, code: "malformed_signature" };
  const timestamp = Number(match[1]);
  const values: TenantContext = {};
  for (const field of CONTEXT_FIELDS) {
    const value = read(headers, field);
    if (value !== undefined) values[field] = value;
  }
  const tenantId = values["x-tenant-id"];
  if (!tenantId) return { ok: false, code: "bad_signature" };
  const signed: SignedRequest = {
    method: request.method ?? "",
    host: read(headers, "host") ?? "",
    target: targetOf(request.url ?? ""),
  };
  const text = canonical(values, signed, timestamp);
  const given = (match[2] as string).slice(1).split(",");
  let known = false;
  let verified = -1;
  for (let i = 0; i + 1 < given.length && verified < 0; i += 2) {
    const version = Number((given[i] as string).slice(2));
    const key = keyFor(keys, tenantId, version);
    if (key === null) continue;
    known = true;
    const expected = createHmac("sha256", key).update(text).digest();
    if (timingSafeEqual(expected, Buffer.from((given[i + 1] as string).slice(2), "hex"))) verified = version;
  }
  if (!known) return { ok: false, code: "unknown_key" };
  if (verified < 0) return { ok: false, code: "bad_signature" };
  const now = options.now ?? Date.now();
  if (Math.abs(now - timestamp) > (options.maxAgeMs ?? 300_000)) return { ok: false, code: "stale_signature" };
  return { ok: true, context: values as TenantContext & { "x-tenant-id": string }, timestamp, keyVersion: verified };
}

function keyFor(keys: ContextKeys, tenantId: string, version: number): Buffer | null {
  if (typeof keys === "function") {
    const token = keys(tenantId, version);
    const parsed = token === null ? null : parseToken(token);
    return parsed !== null && parsed.version === version ? parsed.key : null;
  }
  for (const token of typeof keys === "string" ? [keys] : keys) {
    const parsed = parseToken(token);
    if (parsed !== null && parsed.version === version) return parsed.key;
  }
  return null;
}
