/**
 * Header names and the hygiene rules of the forwarding path, built once.
 *
 * Request direction: hop-by-hop headers (RFC 9110 §7.6.1) and anything the client
 * names in `Connection` are removed; so is every header by which a client could
 * claim an identity or a route that only the router may state (`x-tenant-*`,
 * `Forwarded`, `X-Forwarded-*`, `X-Real-IP`, `X-Original-URL`, method overrides …).
 * Names are compared after lower-casing and mapping `_` to `-`, because many app
 * servers (CGI, WSGI, Rack, PHP) read `X_Tenant_Id` as `X-Tenant-Id`.
 */
export const H = {
  host: "host",
  tenantId: "x-tenant-id",
  tenantSlug: "x-tenant-slug",
  tenantDb: "x-tenant-db",
  tenantAuth: "x-tenant-auth",
  tenantKeyId: "x-tenant-key-id",
  tenantFeatures: "x-tenant-features",
  tenantSignature: "x-tenant-signature",
  userId: "x-user-id",
  requestId: "x-request-id",
  forwardedFor: "x-forwarded-for",
  forwardedHost: "x-forwarded-host",
  forwardedProto: "x-forwarded-proto",
  authorization: "authorization",
  cookie: "cookie",
  connection: "connection",
} as const;

export const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "trailers",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);

/** Removed from every forwarded request, whatever their spelling. */
export const SPOOFABLE = new Set([
  "host",
  "forwarded",
  "x-forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-port",
  "x-forwarded-prefix",
  "x-forwarded-server",
  "x-forwarded-scheme",
  "x-forwarded-ssl",
  "x-real-ip",
  "x-client-ip",
  "x-cluster-client-ip",
  "true-client-ip",
  "cf-connecting-ip",
  "fastly-client-ip",
  "x-original-url",
  "x-rewrite-url",
  "x-original-uri",
  "x-original-host",
  "x-host",
  "x-http-host-override",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  "x-request-id",
  "x-user-id",
  "x-api-key",
  "x-envoy-original-path",
  "x-middleware-subrequest",
  "x-portcullis-internal",
]);

const cache = new Map<string, boolean>();

/** True when a client header of this name must not reach the upstream. */
export function isBlockedRequestHeader(name: string): boolean {
  let blocked = cache.get(name);
  if (blocked === undefined) {
    const n = name.toLowerCase().replaceAll("_", "-");
    // `expect`: the router's own server already answered 100-continue (RFC 9110 §10.1.1).
    blocked =
      HOP_BY_HOP.has(n) || SPOOFABLE.has(n) || n === "expect" || n.startsWith("x-tenant-") || n.startsWith("x-portcullis-");
    // Memo bounded: header names a client invents must not grow memory.
    if (cache.size < 4096) cache.set(name, blocked);
  }
  return blocked;
}

/** Response headers an upstream may not pass to the client (framing is Node's). */
export const RESPONSE_DROP = new Set([...HOP_BY_HOP, "content-length-mismatch"]);

/** Tokens of a Connection header value, lower-cased. */
export function connectionTokens(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const text = Array.isArray(value) ? value.join(",") : value;
  const out: string[] = [];
  for (const t of text.split(",")) {
    const token = t.trim().toLowerCase();
    if (token !== "" && token !== "close" && token !== "keep-alive") out.push(token);
  }
  return out;
}
