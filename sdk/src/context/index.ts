/**
 * The signed tenant context, the one implementation in the repository: the canonical
 * text the router signs, the signature header, the key format, and the verifier an
 * app runs on every request. The router's signer (`contextSigner` in
 * @portcullis/shared) builds on `canonicalContext` and `contextMac` from here, so what
 * is signed and what is verified cannot drift apart. Needs nothing but node:crypto.
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
import { createHmac, type KeyObject, timingSafeEqual } from "node:crypto";

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

/** What is signed besides the context: the request as the upstream receives it. */
export interface SignedRequest {
  method: string;
  host: string;
  /** Path and query (origin form), exactly as sent upstream. */
  target: string;
}

const TOKEN = /^pctx_(\d{1,9})_([A-Za-z0-9_-]{43})$/;

/** A context key as handed to a tenant's app: `pctx_<version>_<base64url of 32 bytes>`. */
export function formatContextKey(version: number, key: Buffer): string {
  return `pctx_${version}_${key.toString("base64url")}`;
}

/** The version and raw bytes of a `pctx_…` key, or null when it is not one. */
export function parseContextKey(token: string): { version: number; key: Buffer } | null {
  const m = TOKEN.exec(token);
  if (m === null) return null;
  return { version: Number(m[1]), key: Buffer.from(m[2] as string, "base64url") };
}

/** The text the signature covers. */
export function canonicalContext(values: TenantContext, request: SignedRequest, timestamp: number): string {
  let text = `v2\n${timestamp}\n${request.method}\n${request.host}\n${request.target}`;
  for (const field of CONTEXT_FIELDS) text += `\n${values[field] ?? ""}`;
  return text;
}

/** HMAC-SHA256 of a canonical text, hex. */
export function contextMac(key: KeyObject | Buffer, text: string): string {
  return createHmac("sha256", key).update(text).digest("hex");
}

/** One signature header value, with the given tenant keys (current first). */
export function signContext(
  values: TenantContext,
  request: SignedRequest,
  keys: readonly { version: number; key: KeyObject | Buffer }[],
  timestamp: number,
): string {
  const text = canonicalContext(values, request, timestamp);
  let header = `t=${timestamp}`;
  for (const k of keys) header += `,k=${k.version},s=${contextMac(k.key, text)}`;
  return header;
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
 * master secret: `contextKeysFrom` in @portcullis/shared).
 */
export type ContextKeys = string | readonly string[] | ((tenantId: string, version: number) => string | null);

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

/** The Host as received; a Web Request built in-process may carry it only in its URL. */
function hostOf(headers: HeaderBag, url: string): string {
  const host = read(headers, "host");
  if (host !== undefined) return host;
  if (url.startsWith("/")) return "";
  try {
    return new URL(url).host;
  } catch {
    return "";
  }
}

const SIGNATURE = /^t=(\d{1,16})((?:,k=\d{1,9},s=[0-9a-f]{64}){1,2})$/;

/** The default replay window: 5 minutes either side of the verifier's clock. */
export const DEFAULT_MAX_AGE_MS = 300_000;

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
  const url = request.url ?? "";
  const signed: SignedRequest = { method: request.method ?? "", host: hostOf(headers, url), target: targetOf(url) };
  const text = canonicalContext(values, signed, timestamp);
  const given = (match[2] as string).slice(1).split(",");
  let known = false;
  let verified = -1;
  for (let i = 0; i + 1 < given.length && verified < 0; i += 2) {
    const version = Number((given[i] as string).slice(2));
    const key = contextKeyFor(keys, tenantId, version);
    if (key === null) continue;
    known = true;
    const expected = createHmac("sha256", key).update(text).digest();
    // Both are 32 bytes (the pattern above admits 64 hex digits only): constant time.
    if (timingSafeEqual(expected, Buffer.from((given[i + 1] as string).slice(2), "hex"))) verified = version;
  }
  if (!known) return { ok: false, code: "unknown_key" };
  if (verified < 0) return { ok: false, code: "bad_signature" };
  const now = options.now ?? Date.now();
  if (Math.abs(now - timestamp) > (options.maxAgeMs ?? DEFAULT_MAX_AGE_MS)) return { ok: false, code: "stale_signature" };
  return { ok: true, context: values as TenantContext & { "x-tenant-id": string }, timestamp, keyVersion: verified };
}

/** The raw key of a tenant and version among `keys`, or null. */
export function contextKeyFor(keys: ContextKeys, tenantId: string, version: number): Buffer | null {
  if (typeof keys === "function") {
    const token = keys(tenantId, version);
    const parsed = token === null ? null : parseContextKey(token);
    return parsed !== null && parsed.version === version ? parsed.key : null;
  }
  for (const token of typeof keys === "string" ? [keys] : keys) {
    const parsed = parseContextKey(token);
    if (parsed !== null && parsed.version === version) return parsed.key;
  }
  return null;
}
