/**
 * Credential confusion: presenting one tenant's credential where another tenant is
 * named, presenting two credentials that disagree, or smuggling a credential where
 * it leaks. The router allows tenant T only when every presented credential names
 * T (contract rules 2–4); every invalid-key answer is the same 401, byte for byte.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestStack, type TestStack } from "../helpers/stack.ts";
import { type Attack, exchange, expectRefused, type Guarded, type GuardedTenant, guardedTenant, req } from "./lib.ts";

const A = "acme.localhost";
const G = "globex.localhost";
const API = "api.localhost";

interface Creds {
  acmeKey: string;
  globexKey: string;
  revokedKey: string;
  acmeCookie: string;
  globexCookie: string;
}

function credentialAttacks(c: Creds): Attack[] {
  return [
    {
      name: "acme's API key on globex's hostname",
      source: "contract rule 3; CWE-639 (authorization bypass through a user-controlled key)",
      bytes: req("GET / HTTP/1.1", `Host: ${G}`, `Authorization: Bearer ${c.acmeKey}`),
      status: 401,
      reason: "key_other_tenant",
    },
    {
      name: "acme's key as X-API-Key on globex's hostname",
      source: "contract rule 3 (every header that carries a key is checked)",
      bytes: req("GET / HTTP/1.1", `Host: ${G}`, `X-API-Key: ${c.acmeKey}`),
      status: 401,
      reason: "key_other_tenant",
    },
    {
      name: "two different keys in Authorization and X-API-Key",
      source: "RFC 6750 §2 (one method per request); parser-differential credential confusion",
      bytes: req("GET / HTTP/1.1", `Host: ${API}`, `Authorization: Bearer ${c.acmeKey}`, `X-API-Key: ${c.globexKey}`),
      status: 400,
      reason: "ambiguous_credentials",
    },
    {
      name: "two Authorization headers",
      source: "RFC 9110 §5.3 (Authorization is not a list); Envoy CVE-2020-25017 (only the first of repeated headers checked)",
      bytes: req("GET / HTTP/1.1", `Host: ${API}`, `Authorization: Bearer ${c.globexKey}`, `Authorization: Bearer ${c.acmeKey}`),
      status: 400,
      reason: "ambiguous_credentials",
    },
    {
      name: "API key in the query string",
      source: "RFC 6750 §5.3 (never pass bearer tokens in page URLs); CWE-598",
      bytes: req(`GET /v1/orders?api_key=${c.acmeKey} HTTP/1.1`, `Host: ${API}`),
      status: 400,
      reason: "key_in_query",
    },
    {
      name: "revoked key on the API hostname",
      source: "contract rule 2 (revoked keys stop at once)",
      bytes: req("GET / HTTP/1.1", `Host: ${API}`, `Authorization: Bearer ${c.revokedKey}`),
      // Audited as key_unknown: the key service reports a revoked key as absent.
      status: 401,
    },
    {
      name: "globex's session cookie on acme's hostname",
      source: "contract rule 4; OWASP 'cookie tossing' across sibling subdomains",
      bytes: req("GET / HTTP/1.1", `Host: ${A}`, `Cookie: ${c.globexCookie}`),
      status: 401,
      reason: "session_other_tenant",
    },
    {
      name: "two session cookies, acme's and globex's",
      source: "RFC 6265 §5.4 (duplicate cookie names; cookie tossing)",
      bytes: req("GET / HTTP/1.1", `Host: ${A}`, `Cookie: ${c.globexCookie}; ${c.acmeCookie}`),
      status: 401,
      reason: "session_invalid",
    },
    {
      name: "session cookie split over two Cookie headers",
      source: "RFC 9113 §8.2.3 / RFC 6265 §5.4 (cookie crumbs joined downstream)",
      bytes: req("GET / HTTP/1.1", `Host: ${A}`, `Cookie: ${c.acmeCookie}`, `Cookie: ${c.globexCookie}`),
      status: 401,
      reason: "session_invalid",
    },
    {
      name: "acme's key with globex's session on the API hostname",
      source: "contract rules 2–4 (every credential must name the same tenant)",
      bytes: req("GET / HTTP/1.1", `Host: ${API}`, `Authorization: Bearer ${c.acmeKey}`, `Cookie: ${c.globexCookie}`),
      status: 401,
      reason: "session_other_tenant",
    },
    {
      name: "a tenant selector header instead of a key on the API hostname",
      source: "contract rule 2 (never a client-supplied tenant selector)",
      bytes: req("GET / HTTP/1.1", `Host: ${API}`, "X-Tenant-Slug: acme", `Cookie: ${c.acmeCookie}`),
      status: 401,
      reason: "key_missing",
    },
  ];
}

const NAMES = credentialAttacks({ acmeKey: "", globexKey: "", revokedKey: "", acmeCookie: "", globexCookie: "" });

describe("credential confusion", () => {
  let stack: TestStack;
  let acme: GuardedTenant;
  let globex: GuardedTenant;
  let g: Guarded;
  let creds: Creds;
  let attacks: Attack[];

  beforeAll(async () => {
    stack = await startTestStack();
    acme = await guardedTenant(stack, "acme");
    globex = await guardedTenant(stack, "globex");
    g = { stack, sentinels: [acme.sentinel, globex.sentinel] };
    const key = async (slug: string) => (await stack.admin("POST", `/v1/tenants/${slug}/keys`, { name: "k" })).json();
    const cookie = async (slug: string) => {
      const user = (await stack.admin("POST", `/v1/tenants/${slug}/users`, { email: `u@${slug}.example` })).json();
      return (await stack.admin("POST", `/v1/tenants/${slug}/users/${user.id}/sessions`)).json().cookie as string;
    };
    const revoked = await key("acme");
    expect((await stack.admin("DELETE", `/v1/tenants/acme/keys/${revoked.id}`)).status).toBe(204);
    creds = {
      acmeKey: (await key("acme")).key,
      globexKey: (await key("globex")).key,
      revokedKey: revoked.key,
      acmeCookie: await cookie("acme"),
      globexCookie: await cookie("globex"),
    };
    await stack.cp.publisher.flush();
    attacks = credentialAttacks(creds);
  });
  afterAll(async () => {
    await stack?.close();
    await acme?.sentinel.close();
    await globex?.sentinel.close();
  });

  it("each credential works for its own tenant (control)", async () => {
    for (const [bytes, app] of [
      [req("GET / HTTP/1.1", `Host: ${API}`, `Authorization: Bearer ${creds.acmeKey}`, "Connection: close"), "acme-app"],
      [req("GET / HTTP/1.1", `Host: ${API}`, `X-API-Key: ${creds.globexKey}`, "Connection: close"), "globex-app"],
      [req("GET / HTTP/1.1", `Host: ${A}`, `Cookie: ${creds.acmeCookie}`, "Connection: close"), "acme-app"],
      [req("GET / HTTP/1.1", `Host: ${G}`, `Authorization: Bearer ${creds.globexKey}`, "Connection: close"), "globex-app"],
    ] as const) {
      const ex = await exchange(stack.port, bytes);
      expect(
        ex.responses.map((r) => r.status),
        bytes,
      ).toEqual([200]);
      expect(JSON.parse(ex.responses[0]!.body).app).toBe(app);
    }
  });

  NAMES.forEach((named, i) => {
    it(`${named.name} — ${named.source}`, async () => {
      await expectRefused(g, attacks[i]!);
    });
  });

  it("every invalid-key answer is byte-identical but for the request id — contract rule 2 (no key oracle)", async () => {
    const bodies = new Set<string>();
    for (const auth of [`Bearer ${creds.revokedKey}`, "Bearer pck_nonsense", `Bearer ${creds.acmeKey}x`]) {
      const ex = await exchange(stack.port, req("GET / HTTP/1.1", `Host: ${API}`, `Authorization: ${auth}`, "Connection: close"));
      const r = ex.responses[0]!;
      expect(r.status).toBe(401);
      bodies.add(r.body.replace(r.headers["x-request-id"] as string, "ID"));
    }
    const other = await exchange(
      stack.port,
      req("GET / HTTP/1.1", `Host: ${G}`, `Authorization: Bearer ${creds.acmeKey}`, "Connection: close"),
    );
    const r = other.responses[0]!;
    bodies.add(r.body.replace(r.headers["x-request-id"] as string, "ID"));
    expect(bodies.size).toBe(1);
  });
});
