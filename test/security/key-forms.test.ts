/**
 * API keys in forms the router does not take: another scheme, junk
 * after the key, Basic credentials, another header, a cookie, the Referer. An app may
 * read any of these as the key, so the edge must see them too: each is a presented
 * key — verified and refused (another tenant's: the one byte-identical 401; the host
 * tenant's own: 400 `misplaced_key`) — and never forwarded. Only `Authorization:
 * Bearer` and `X-API-Key` carry a key (SECURITY.md, guarantee 2).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "@portcullis/shared";
import { startTestStack, type TestStack } from "../helpers/stack.ts";
import { exchange, expectRefused, type Guarded, type GuardedTenant, guardedTenant, req } from "./lib.ts";

const A = "acme.localhost";
const API = "api.localhost";
const b64 = (s: string) => Buffer.from(s, "latin1").toString("base64");

/** Header lines carrying `key` where the router does not take keys from. */
const FORMS: [name: string, source: string, lines: (key: string) => string[]][] = [
  ["Authorization: Token", "DRF TokenAuthentication; RFC 9110 §11.6.2", (k) => [`Authorization: Token ${k}`]],
  ["Authorization: ApiKey", "Elasticsearch-style scheme", (k) => [`Authorization: ApiKey ${k}`]],
  ["Bearer with trailing junk", "RFC 6750 §2.1 (apps split on whitespace)", (k) => [`Authorization: Bearer ${k} x`]],
  ["Basic user:key", "RFC 7617 §2 (key as password)", (k) => [`Authorization: Basic ${b64(`user:${k}`)}`]],
  ["Basic key:", "RFC 7617 §2 (key as user-id, Stripe style)", (k) => [`Authorization: Basic ${b64(`${k}:`)}`]],
  ["Basic key: at offset 1", "RFC 7617 §2 (any alignment)", (k) => [`Authorization: basic ${b64(`u${k}:`)}`]],
  ["Basic :key at offset 2", "RFC 7617 §2 (any alignment)", (k) => [`Authorization: Basic ${b64(`uv:${k}`)}`]],
  ["X-Api-Token header", "unrecognised key header", (k) => [`X-Api-Token: ${k}`]],
  ["Api-Key header", "unrecognised key header", (k) => [`Api-Key: ${k}`]],
  ["X_API_KEY (underscore) header", "CVE-2025-29927-class name spelling", (k) => [`X_API_KEY: ${k}`]],
  ["a cookie", "RFC 6265 §5.4", (k) => [`Cookie: theme=dark; api_key=${k}`]],
  [
    "a percent-encoded cookie",
    "RFC 6265 §4.1.1 (apps percent-decode cookie values)",
    (k) => [`Cookie: api_key=${k.replace("_", "%5F")}`],
  ],
  ["the Referer", "RFC 9110 §10.1.3 (a key in a page URL)", (k) => [`Referer: https://app.example/?key=${k}`]],
  ["an app's JWT with the key after it", "RFC 6750 §2.1", (k) => [`Authorization: Bearer eyJhbGciOi.x.y ${k}`]],
];

describe("API keys in forms the router does not take", () => {
  let stack: TestStack;
  let acme: GuardedTenant;
  let globex: GuardedTenant;
  let g: Guarded;
  let acmeKey = "";
  let globexKey = "";

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real" });
    acme = await guardedTenant(stack, "acme");
    globex = await guardedTenant(stack, "globex");
    g = { stack, sentinels: [acme.sentinel, globex.sentinel] };
    acmeKey = (await stack.admin("POST", "/v1/tenants/acme/keys", { name: "k" })).json().key;
    globexKey = (await stack.admin("POST", "/v1/tenants/globex/keys", { name: "k" })).json().key;
    await stack.cp.publisher.flush();
  });
  afterAll(async () => {
    await stack?.close();
    await acme?.sentinel.close();
    await globex?.sentinel.close();
  });

  const noKeyForwarded = () =>
    expect(
      [...acme.sentinel.requests, ...globex.sentinel.requests].some((r) => JSON.stringify(r.rawHeaders).includes("pck")),
      "a key reached an upstream",
    ).toBe(false);

  for (const [name, source, lines] of FORMS) {
    it(`globex's key in ${name} on acme's hostname is refused as another tenant's key — ${source}; contract rule 3`, async () => {
      const { response } = await expectRefused(g, {
        name,
        source,
        bytes: req("GET / HTTP/1.1", `Host: ${A}`, ...lines(globexKey)),
        status: 401,
        reason: "key_other_tenant",
      });
      expect(JSON.parse(response.body).error.code).toBe("invalid_api_key");
      noKeyForwarded();
    });

    it(`acme's own key in ${name} on acme's hostname is refused (400 misplaced_key), not forwarded — ${source}`, async () => {
      await expectRefused(g, {
        name,
        source,
        bytes: req("GET / HTTP/1.1", `Host: ${A}`, ...lines(acmeKey)),
        status: 400,
        reason: "misplaced_key",
      });
      noKeyForwarded();
    });
  }

  it("an invented well-formed key in X-Api-Token is verified and refused like any unknown key (401)", async () => {
    await expectRefused(g, {
      name: "invented key in X-Api-Token",
      source: "contract rule 2",
      bytes: req("GET / HTTP/1.1", `Host: ${A}`, `X-Api-Token: ${generateApiKey().key}`),
      status: 401,
      reason: "key_unknown",
    });
  });

  it("a valid key in an unrecognised form on the API hostname is refused (400 misplaced_key); an invented one 401", async () => {
    await expectRefused(g, {
      name: "Token scheme on the API hostname",
      source: "contract rule 2",
      bytes: req("GET / HTTP/1.1", `Host: ${API}`, `Authorization: Token ${acmeKey}`),
      status: 400,
      reason: "misplaced_key",
    });
    await expectRefused(g, {
      name: "invented key in a cookie on the API hostname",
      source: "contract rule 2",
      bytes: req("GET / HTTP/1.1", `Host: ${API}`, `Cookie: k=${generateApiKey().key}`),
      status: 401,
      reason: "key_unknown",
    });
  });

  it("a key in Bearer and the same key again in another header is refused; two different keys are ambiguous (400)", async () => {
    await expectRefused(g, {
      name: "the key twice, once in a cookie",
      source: "contract: the key is never forwarded, in whatever form",
      bytes: req("GET / HTTP/1.1", `Host: ${A}`, `Authorization: Bearer ${acmeKey}`, `Cookie: k=${acmeKey}`),
      status: 400,
      reason: "misplaced_key",
    });
    await expectRefused(g, {
      name: "two different keys in unrecognised headers",
      source: "RFC 6750 §2 (one method per request)",
      bytes: req("GET / HTTP/1.1", `Host: ${A}`, `X-Api-Token: ${acmeKey}`, `Api-Key: ${globexKey}`),
      status: 400,
      reason: "ambiguous_credentials",
    });
    noKeyForwarded();
  });

  it("the 401 for a key in an unrecognised form is byte-identical to every other invalid-key answer — contract rule 2", async () => {
    const bodies = new Set<string>();
    for (const lines of [
      [`Authorization: Bearer ${generateApiKey().key}`],
      [`X-Api-Token: ${globexKey}`],
      [`Authorization: Basic ${b64(`${generateApiKey().key}:`)}`],
    ]) {
      const ex = await exchange(stack.port, req("GET / HTTP/1.1", `Host: ${A}`, ...lines, "Connection: close"));
      const r = ex.responses[0]!;
      expect(r.status).toBe(401);
      const { "x-request-id": id, date: _date, ...headers } = r.headers;
      bodies.add(JSON.stringify([r.body.replace(id as string, "ID"), headers]));
    }
    expect([...bodies]).toHaveLength(1);
  });

  it("values that only look alike pass through: an app's tokens, Basic credentials, a mistyped prefix (control)", async () => {
    const before = acme.sentinel.requests.length;
    const typo = `${acmeKey.slice(0, -1)}${acmeKey.at(-1) === "A" ? "B" : "A"}`;
    const lines = [
      "Authorization: Basic dXNlcjpwYXNz",
      "X-Api-Token: tok_0123456789abcdef",
      "Cookie: pck_pref=1; other=pck_short",
      `X-Note: ${typo.slice(0, 20)}`,
    ];
    const ex = await exchange(stack.port, req("GET /own HTTP/1.1", `Host: ${A}`, ...lines, "Connection: close"));
    expect(ex.responses.map((r) => r.status)).toEqual([200]);
    const got = acme.sentinel.requests.slice(before);
    expect(got.map((r) => r.headers.authorization)).toEqual(["Basic dXNlcjpwYXNz"]);
    expect(got[0]!.headers["x-api-token"]).toBe("tok_0123456789abcdef");
  });
});
