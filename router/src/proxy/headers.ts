/**
 * Header names and the hygiene rules of the forwarding path, built once.
 *
 * Request direction: hop-by-hop headers (RFC 9110 §7.6.1) and anything the client
 * names in `Connection` are removed; so is every header by which a client could
 * claim an identity, a client address or a route that only the router may state:
 * by rule, every name of the identity families below (`x-forwarded-*`, `forwarded`,
 * `x-auth-request-*`, `*-client-ip`, `*-client-cert`, `x-remote-*`, …), plus the
 * names in SPOOFABLE (method overrides, rewritten URLs, the request id …).
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

/**
 * Identity, client-address and forwarding headers, by rule rather than by name: the
 * families that identity-aware proxies and load balancers set for the app behind them,
 * which such an app takes as the truth. Only the router states these; whatever a
 * client sends under them is removed. Prefixes (after lower-casing and `_` → `-`):
 */
export const IDENTITY_PREFIXES = [
  "x-forwarded-", // X-Forwarded-User/-Email/-Groups/-Access-Token (oauth2-proxy, Traefik ForwardAuth), -Client-Cert (Envoy XFCC), -Uri, -Prefix …
  "x-auth-request-", // nginx auth_request + oauth2-proxy: X-Auth-Request-User/-Email/-Groups/-Access-Token
  "x-tenant-", // Portcullis's own context
  "x-portcullis-",
  "x-envoy-", // Envoy: x-envoy-external-address, x-envoy-internal, x-envoy-original-path …
  "x-pomerium-", // Pomerium: X-Pomerium-Jwt-Assertion, X-Pomerium-Claim-*
  "x-authentik-", // authentik: X-authentik-username/-email/-groups/-jwt
  "remote-", // Authelia: Remote-User/-Groups/-Email/-Name
  "x-remote-", // X-Remote-User/-Addr/-Group
  "x-originating-", // X-Originating-IP
  "x-original-", // X-Original-URL/-URI/-Host/-Forwarded-For/-Method
  "cf-", // Cloudflare: CF-Connecting-IP, Cf-Access-Authenticated-User-Email, Cf-Access-Jwt-Assertion, CF-IPCountry …
  "x-goog-authenticated-user-", // Google IAP
  "x-goog-iap-",
  "x-amzn-oidc-", // AWS ALB authentication: x-amzn-oidc-identity/-data/-accesstoken
  "x-ms-client-principal", // Azure App Service authentication
  "x-ms-token-",
  "x-webauth-", // X-WEBAUTH-USER (Grafana-style auth proxy)
  "x-consumer-", // Kong: X-Consumer-ID/-Username/-Custom-ID
  "x-credential-", // Kong: X-Credential-Identifier
  "x-authenticated-", // Kong: X-Authenticated-Userid/-Scope
  "x-anonymous-", // Kong: X-Anonymous-Consumer
  "x-ssl-", // X-SSL-Client-Cert/-DN/-Verify (nginx, HAProxy conventions)
  "ssl-client-",
  "x-client-cert", // X-Client-Cert, X-Client-Certificate
  "x-arr-", // Azure ARR: X-ARR-ClientCert
  "tailscale-", // Tailscale serve: Tailscale-User-Login/-Name
  "x-proxyuser-", // Google: X-ProxyUser-IP
] as const;

/** Suffix families: `X-Client-IP`, `True-Client-IP`, `X-Cluster-Client-IP`, `Fastly-Client-IP`, `X-Real-IP` … */
export const IDENTITY_SUFFIXES = ["client-ip", "-client-cert", "-client-certificate", "real-ip", "-connecting-ip"] as const;

/** Single names of the same kind that no family above covers. */
const IDENTITY_NAMES = new Set([
  "forwarded",
  "x-forwarded",
  "client-ip",
  "x-user",
  "x-user-id",
  "x-user-email",
  "x-user-name",
  "x-user-login",
  "x-user-groups",
  "x-user-roles",
  "x-email",
  "x-auth-user",
  "x-auth-email",
  "x-auth-username",
  "x-auth-name",
  "x-auth-groups",
  "x-client-verify",
  "x-client-dn",
  "x-client-s-dn",
  "x-client-i-dn",
  "x-iap-jwt-assertion",
]);

/**
 * True for a (normalised) name of the identity families: a prefix, a suffix or a
 * single name above.
 */
export function isIdentityHeader(n: string): boolean {
  if (IDENTITY_NAMES.has(n)) return true;
  for (const p of IDENTITY_PREFIXES) if (n.startsWith(p)) return true;
  for (const s of IDENTITY_SUFFIXES) if (n.endsWith(s)) return true;
  return false;
}

const cache = new Map<string, boolean>();

/** True when a client header of this name must not reach the upstream. */
export function isBlockedRequestHeader(name: string): boolean {
  let blocked = cache.get(name);
  if (blocked === undefined) {
    const n = name.toLowerCase().replaceAll("_", "-");
    // `expect`: the router's own server already answered 100-continue (RFC 9110 §10.1.1).
    // `content-length` (any spelling): the router frames the body itself (proxy/h1-request.ts).
    blocked = HOP_BY_HOP.has(n) || SPOOFABLE.has(n) || n === "expect" || n === "content-length" || isIdentityHeader(n);
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
