/**
 * The signed tenant context: the headers the router sets on every forwarded request
 * and the verifier an upstream app uses to trust them. The signature is
 * HMAC-SHA256(CONTEXT_SIGNING_SECRET, canonical) where canonical is
 * `v1\n<timestamp ms>\n` followed by every field of CONTEXT_FIELDS, in that order,
 * one per line (an absent field is an empty line). Header values cannot hold a
 * newline (RFC 9110 §5.5), so the encoding is unambiguous.
 */
import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from "node:crypto";

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

function canonical(values: TenantContext, timestamp: number): string {
  let text = `v1\n${timestamp}`;
  for (const field of CONTEXT_FIELDS) text += `\n${values[field] ?? ""}`;
  return text;
}

/** `t=<ms>,v1=<hex>`: the value of the x-tenant-signature header. */
export function signContext(values: TenantContext, secret: string, timestamp: number): string {
  const mac = createHmac("sha256", secret).update(canonical(values, timestamp)).digest("hex");
  return `t=${timestamp},v1=${mac}`;
}

/**
 * `signContext` with the key imported once: the router signs every forwarded
 * request, and importing a string secret on each HMAC is avoidable work.
 */
export function contextSigner(secret: string): (values: TenantContext, timestamp: number) => string {
  const key: KeyObject = createSecretKey(Buffer.from(secret, "utf8"));
  return (values, timestamp) =>
    `t=${timestamp},v1=${createHmac("sha256", key).update(canonical(values, timestamp)).digest("hex")}`;
}

export type ContextVerification =
  | { ok: true; context: TenantContext & { "x-tenant-id": string }; timestamp: number }
  | { ok: false; code: "missing_signature" | "malformed_signature" | "bad_signature" | "stale_signature" };

type HeaderBag = Record<string, string | string[] | undefined> | { get(name: string): string | null };

function read(headers: HeaderBag, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === "function") {
    return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  }
  const value = (headers as Record<string, string | string[] | undefined>)[name];
  // A repeated context header was not set by the router: treat it as forged.
  return Array.isArray(value) ? "\u0000" : value;
}

/**
 * Verify the tenant context an upstream received. Accepts Node's `req.headers` or a
 * Web `Headers`. `maxAgeMs` bounds replay of a captured request (default 5 minutes).
 */
export function verifyTenantContext(
  headers: HeaderBag,
  secret: string,
  options: { maxAgeMs?: number; now?: number } = {},
): ContextVerification {
  const signature = read(headers, SIGNATURE_HEADER);
  if (!signature) return { ok: false, code: "missing_signature" };
  const match = /^t=(\d{1,16}),v1=([0-9a-f]{64})$/.exec(signature);
  if (!match) return { ok: false, code: "malformed_signature" };
  const timestamp = Number(match[1]);
  const values: TenantContext = {};
  for (const field of CONTEXT_FIELDS) {
    const value = read(headers, field);
    if (value !== undefined) values[field] = value;
  }
  const expected = createHmac("sha256", secret).update(canonical(values, timestamp)).digest();
  const given = Buffer.from(match[2] as string, "hex");
  if (!timingSafeEqual(expected, given)) return { ok: false, code: "bad_signature" };
  const now = options.now ?? Date.now();
  const maxAge = options.maxAgeMs ?? 300_000;
  if (Math.abs(now - timestamp) > maxAge) return { ok: false, code: "stale_signature" };
  if (!values["x-tenant-id"]) return { ok: false, code: "bad_signature" };
  return { ok: true, context: values as TenantContext & { "x-tenant-id": string }, timestamp };
}
