/**
 * Header spoofing: a client claiming an identity, a route, an address or a method
 * that only the edge may state. Routing headers never route (refused, no upstream
 * byte); identity headers never reach the app in any case or underscore spelling,
 * and the edge's own values survive a `Connection` header that names them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { contextKeysFrom, verifyTenantContext } from "@portcullis/shared";
import { SECRETS, startTestStack, type TestStack } from "../helpers/stack.ts";
import { type Attack, exchange, expectRefused, type Guarded, type GuardedTenant, guardedTenant, req } from "./lib.ts";

const A = "acme.localhost";
const G = "globex.localhost";

const attacks: Attack[] = [
  {
    name: "X-Forwarded-Host naming a tenant on an unknown Host",
    source: "PortSwigger 'Practical HTTP Host header attacks' (X-Forwarded-Host override)",
    bytes: req("GET / HTTP/1.1", "Host: nobody.localhost", `X-Forwarded-Host: ${A}`),
    status: 404,
    reason: "unknown_host",
  },
  {
    name: "Forwarded host= naming a tenant on an unknown Host",
    source: "RFC 7239 §5.3 (Forwarded is informational, set by proxies, never by clients)",
    bytes: req("GET / HTTP/1.1", "Host: nobody.localhost", `Forwarded: for=1.2.3.4;host=${A};proto=https`),
    status: 404,
    reason: "unknown_host",
  },
  {
    name: "X-Host / X-HTTP-Host-Override naming a tenant",
    source: "PortSwigger 'Host header override headers' (X-Host, X-HTTP-Host-Override, X-Forwarded-Server)",
    bytes: req(
      "GET / HTTP/1.1",
      "Host: nobody.localhost",
      `X-Host: ${A}`,
      `X-HTTP-Host-Override: ${A}`,
      `X-Forwarded-Server: ${A}`,
    ),
    status: 404,
    reason: "unknown_host",
  },
  {
    name: "X-Tenant-Id as a tenant selector on the API hostname",
    source: "contract rule 2 (never a client-supplied tenant selector); CWE-639",
    bytes: req("GET /v1/orders HTTP/1.1", "Host: api.localhost", "X-Tenant-Id: ten_acme", "X-Tenant-Slug: acme"),
    status: 401,
    reason: "key_missing",
  },
  {
    name: "underscore X_Tenant_Slug as a tenant selector",
    source: "CGI/WSGI/Rack '_'→'-' header aliasing (nginx underscores_in_headers, Envoy headers_with_underscores_action)",
    bytes: req("GET /v1/orders HTTP/1.1", "Host: api.localhost", "X_Tenant_Slug: acme"),
    status: 401,
    reason: "key_missing",
  },
  {
    name: "NUL in a header value",
    source: "Envoy CVE-2019-9900 (embedded NUL in HTTP/1.1 header values)",
    bytes: req("GET / HTTP/1.1", `Host: ${A}`, "X-App: a\x00b"),
    status: 400,
  },
  {
    name: "DEL in a header value",
    source: "RFC 9110 §5.5 (field-value is VCHAR / obs-text / SP / HTAB)",
    bytes: req("GET / HTTP/1.1", `Host: ${A}`, "X-App: a\x7fb"),
    status: 400,
  },
  {
    name: "escape sequence in a header value (log injection)",
    source: "RFC 9110 §5.5; CWE-117 (terminal escapes into audit logs)",
    bytes: req("GET / HTTP/1.1", `Host: ${A}`, "User-Agent: \x1b[31mred"),
    status: 400,
  },
  {
    name: "separator character in a header name",
    source: "RFC 9110 §5.1 (field-name is a token)",
    bytes: req("GET / HTTP/1.1", `Host: ${A}`, "X-Tenant(Id): ten_globex"),
    status: 400,
  },
];

/** Header names as an app server that maps `_` to `-` would read them. */
function appNames(rawHeaders: string[]): string[] {
  return rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase().replaceAll("_", "-"));
}

interface Stripping {
  name: string;
  source: string;
  lines: string[];
  /** Header names (app spelling) that must not reach the upstream at all. */
  absent: string[];
}

/** Identity headers of the proxies an app may follow, one per family (stripped by rule, not by list). */
const IDENTITY_LINES = [
  "X-Forwarded-User: admin",
  "X-Forwarded-Email: admin@globex.example",
  "X-Forwarded-Groups: admins",
  "X-Forwarded-Preferred-Username: admin",
  "X-Forwarded-Access-Token: eyJ.forged",
  "X-Forwarded-Client-Cert: By=spiffe://globex;Hash=00",
  "X-Forwarded-Uri: /admin",
  "X-Auth-Request-User: admin",
  "X-Auth-Request-Email: admin@globex.example",
  "X_Auth_Request_Groups: admins",
  "Client-IP: 6.6.6.6",
  "X-Originating-IP: 6.6.6.6",
  "X-Remote-Addr: 6.6.6.6",
  "X-Remote-User: admin",
  "Remote-User: admin",
  "Remote-Groups: admins",
  "X-Pomerium-Jwt-Assertion: eyJ.forged",
  "X-Pomerium-Claim-Email: admin@globex.example",
  "Cf-Access-Authenticated-User-Email: admin@globex.example",
  "Cf-Access-Jwt-Assertion: eyJ.forged",
  "X-Goog-Authenticated-User-Email: accounts.google.com:admin@globex.example",
  "X-Amzn-Oidc-Identity: admin",
  "X-MS-CLIENT-PRINCIPAL-NAME: admin",
  "X-Authentik-Username: admin",
  "X-Consumer-Username: admin",
  "X-Authenticated-Userid: admin",
  "X-SSL-Client-DN: CN=admin",
  "X-Client-Cert: forged",
  "Akamai-Client-Ip: 6.6.6.6",
  "X-Envoy-External-Address: 6.6.6.6",
  "X-WEBAUTH-USER: admin",
  "Tailscale-User-Login: admin@globex.example",
  "X-Auth-User: admin",
  "X-User: admin",
];

const strippings: Stripping[] = [
  {
    name: "identity headers of oauth2-proxy, Envoy, Pomerium, Authelia, Cloudflare, IAP, ALB, Kong and their like, by rule",
    source: "oauth2-proxy X-Forwarded-User/X-Auth-Request-*; Envoy XFCC; Pomerium; Authelia Remote-*; Cloudflare Access",
    lines: IDENTITY_LINES,
    absent: IDENTITY_LINES.map((l) => (l.split(":")[0] as string).toLowerCase().replaceAll("_", "-")),
  },
  {
    name: "x-tenant-* in every case and underscore spelling",
    source: "contract 'What an upstream receives'; CGI '_'→'-' aliasing",
    lines: ["X-TENANT-DB: pg-globex/globex", "x_tenant_key_id: key_globex", "X-Tenant_Features: admin", "X-TENANT-OVERRIDE: 1"],
    absent: ["x-tenant-override"],
  },
  {
    name: "Forwarded, X-Forwarded-*, X-Real-IP, True-Client-IP",
    source: "RFC 7239 §8.1 (spoofed Forwarded); CWE-348 (less trusted source)",
    lines: [
      "Forwarded: for=6.6.6.6;host=globex.localhost;proto=https",
      "X-Forwarded-Port: 443",
      "X_Forwarded_Prefix: /admin",
      "X-Real-IP: 6.6.6.6",
      "True-Client-IP: 6.6.6.6",
      "CF-Connecting-IP: 6.6.6.6",
    ],
    absent: ["forwarded", "x-forwarded-port", "x-forwarded-prefix", "x-real-ip", "true-client-ip", "cf-connecting-ip"],
  },
  {
    name: "X-Original-URL / X-Rewrite-URL path override",
    source: "Symfony CVE-2018-14773 (X-Original-URL / X-Rewrite-URL access-control bypass)",
    lines: ["X-Original-URL: /admin", "X_Rewrite_URL: /admin", "X-Original-URI: /admin"],
    absent: ["x-original-url", "x-rewrite-url", "x-original-uri"],
  },
  {
    name: "method override headers",
    source: "OWASP 'HTTP method override' (X-HTTP-Method-Override tunnelling past method rules)",
    lines: ["X-HTTP-Method-Override: DELETE", "X_HTTP_Method: DELETE", "X-Method-Override: PUT"],
    absent: ["x-http-method-override", "x-http-method", "x-method-override"],
  },
  {
    name: "internal sub-request marker",
    source: "Next.js CVE-2025-29927 (x-middleware-subrequest skips middleware)",
    lines: ["x-middleware-subrequest: middleware:middleware:middleware:middleware:middleware"],
    absent: ["x-middleware-subrequest"],
  },
  {
    name: "Connection naming the edge's own headers",
    source: "Traefik CVE-2024-45410 (hop-by-hop Connection strips X-Forwarded-*); RFC 9110 §7.6.1",
    lines: [
      "Connection: keep-alive, X-Forwarded-For, X-Forwarded-Host, X-Tenant-Id, X-Request-Id, X-Tenant-Signature, X-App-Secret",
      "X-App-Secret: 1",
    ],
    absent: ["x-app-secret"],
  },
];

describe("header spoofing", () => {
  let stack: TestStack;
  let acme: GuardedTenant;
  let globex: GuardedTenant;
  let g: Guarded;

  beforeAll(async () => {
    stack = await startTestStack();
    acme = await guardedTenant(stack, "acme");
    globex = await guardedTenant(stack, "globex");
    g = { stack, sentinels: [acme.sentinel, globex.sentinel] };
  });
  afterAll(async () => {
    await stack?.close();
    await acme?.sentinel.close();
    await globex?.sentinel.close();
  });

  for (const attack of attacks) {
    it(`${attack.name} — ${attack.source}`, async () => {
      await expectRefused(g, attack);
    });
  }

  for (const s of strippings) {
    it(`strips ${s.name} — ${s.source}`, async () => {
      const before = acme.sentinel.requests.length;
      const globexBytes = globex.sentinel.bytes;
      const ex = await exchange(
        stack.port,
        req(
          "GET /strip HTTP/1.1",
          `Host: ${A}`,
          ...s.lines,
          `X-Tenant-Id: ${globex.id}`,
          "X-Tenant-Slug: globex",
          "Connection: close",
        ),
      );
      expect(ex.responses.map((r) => r.status)).toEqual([200]);
      const requestId = ex.responses[0]!.headers["x-request-id"] as string;
      const events = await stack.auditFor(requestId);
      expect(events).toHaveLength(1);
      expect(events[0]?.decision).toBe("allow");
      expect(acme.sentinel.requests.length).toBe(before + 1);
      expect(globex.sentinel.bytes).toBe(globexBytes);
      const seen = acme.sentinel.requests.at(-1)!;
      const names = appNames(seen.rawHeaders);
      for (const name of s.absent) expect(names, name).not.toContain(name);
      // The edge's own context: each header once, with the edge's values, signed.
      for (const name of [
        "x-tenant-id",
        "x-tenant-slug",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-request-id",
        "x-tenant-signature",
      ])
        expect(
          names.filter((n) => n === name),
          name,
        ).toHaveLength(1);
      expect(seen.headers["x-tenant-id"]).toBe(acme.id);
      expect(seen.headers["x-tenant-slug"]).toBe("acme");
      expect(seen.headers["x-forwarded-for"]).toBe("127.0.0.1");
      expect(seen.headers["x-forwarded-host"]).toBe(A);
      expect(seen.headers["x-request-id"]).toBe(requestId);
      // Nothing the client sent under a tenant-context name survives.
      const tenantNames = names.filter((n) => n.startsWith("x-tenant-"));
      expect(new Set(tenantNames).size).toBe(tenantNames.length);
      expect(verifyTenantContext(seen, contextKeysFrom(SECRETS.CONTEXT_SIGNING_SECRET)).ok).toBe(true);
    });
  }

  it("passes an app's own headers that only look like the identity families (control)", async () => {
    const before = acme.sentinel.requests.length;
    const ex = await exchange(
      stack.port,
      req(
        "GET /own HTTP/1.1",
        `Host: ${A}`,
        "X-Client-Version: 4.2",
        "X-User-Agent: app/1",
        "X-Request-Source: web",
        "Connection: close",
      ),
    );
    expect(ex.responses.map((r) => r.status)).toEqual([200]);
    expect(acme.sentinel.requests.length).toBe(before + 1);
    const names = appNames(acme.sentinel.requests.at(-1)!.rawHeaders);
    for (const name of ["x-client-version", "x-user-agent", "x-request-source"]) expect(names).toContain(name);
  });

  it("never routes by X-Forwarded-Host over a valid Host (control: the Host wins)", async () => {
    const globexBytes = globex.sentinel.bytes;
    const ex = await exchange(stack.port, req("GET / HTTP/1.1", `Host: ${A}`, `X-Forwarded-Host: ${G}`, "Connection: close"));
    expect(ex.responses.map((r) => r.status)).toEqual([200]);
    expect(JSON.parse(ex.responses[0]!.body).app).toBe("acme-app");
    expect(globex.sentinel.bytes).toBe(globexBytes);
  });
});
