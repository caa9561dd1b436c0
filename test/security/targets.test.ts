/**
 * Path and target tricks: request-targets that a tenant app would read differently
 * from the edge (traversal, encoded separators, fragments, controls, odd forms and
 * methods). The edge never forwards an ambiguous target; it refuses it (RFC 9112
 * §3.2, RFC 3986 §5.2.4).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestStack, type TestStack } from "../helpers/stack.ts";
import { type Attack, exchange, expectRefused, type Guarded, type GuardedTenant, guardedTenant, req } from "./lib.ts";

const A = "acme.localhost";
const get = (target: string, method = "GET") => req(`${method} ${target} HTTP/1.1`, `Host: ${A}`);

const attacks: Attack[] = [
  {
    name: "dot-segment traversal",
    source: "Envoy CVE-2019-9901 (path not normalized before route match)",
    bytes: get("/public/../admin"),
    status: 400,
    reason: "invalid_target",
  },
  {
    name: "traversal with an escaped slash",
    source: "Envoy CVE-2021-29492 (%2F not treated as a separator)",
    bytes: get("/public/..%2Fadmin"),
    status: 400,
    reason: "invalid_target",
  },
  {
    name: "percent-encoded dot segments",
    source: "RFC 3986 §2.3, §5.2.4 (%2e is '.'); Envoy CVE-2019-9901 class",
    bytes: get("/%2e%2e/%2E%2e/etc/passwd"),
    status: 400,
    reason: "invalid_target",
  },
  {
    name: "backslash traversal",
    source: "RFC 3986 §3.3 ('\\' is not a separator, but WHATWG URL and IIS read it as '/')",
    bytes: get("/static/..\\..\\admin"),
    status: 400,
    reason: "invalid_target",
  },
  {
    name: "encoded backslash traversal",
    source: "Envoy CVE-2021-29492 class (%5C as a separator)",
    bytes: get("/static/..%5cadmin"),
    status: 400,
    reason: "invalid_target",
  },
  {
    name: "protocol-relative target '//host/'",
    source: "RFC 9112 §3.2.1 (origin-form has no empty first segment); open redirect / SSRF via '//host'",
    bytes: get("//evil.example/login"),
    status: 400,
    reason: "invalid_target",
  },
  {
    name: "fragment in the request-target",
    source: "RFC 9112 §3.2 (no fragment in a request-target); Envoy CVE-2021-32779 ('#' in path)",
    bytes: get("/account#/../admin"),
    status: 400,
  },
  {
    name: "unescaped space in the target",
    source: "nginx CVE-2013-4547 (unescaped space then NUL)",
    bytes: get("/file .php"),
    status: 400,
  },
  {
    name: "control character in the target",
    source: "RFC 9112 §3.2 / RFC 3986 §2 (no CTLs in a URI); llhttp strict target parsing",
    bytes: get("/a\x01b"),
    status: 400,
  },
  {
    name: "raw non-ASCII byte in the target",
    source: "RFC 3986 §2.1 (octets beyond ASCII only percent-encoded)",
    bytes: Buffer.concat([Buffer.from("GET /caf"), Buffer.from([0xe9]), Buffer.from(` HTTP/1.1\r\nHost: ${A}\r\n\r\n`)]),
    status: 400,
  },
  {
    name: "asterisk-form target on GET",
    source: "RFC 9112 §3.2.4 (asterisk-form only for server-wide OPTIONS)",
    bytes: get("*"),
    status: 400,
    reason: "invalid_target",
  },
  {
    name: "absolute-form with a non-HTTP scheme",
    source: "RFC 9112 §3.2.2; SSRF via gopher:/file: (Orange Tsai, 'A new era of SSRF')",
    bytes: get(`file://${A}/etc/passwd`),
    status: 400,
    reason: "invalid_target",
  },
  {
    name: "TRACE (cross-site tracing)",
    source: "RFC 9110 §9.3.8; CVE-2004-2320 (XST)",
    bytes: get("/", "TRACE"),
    status: 405,
    reason: "method_not_allowed",
  },
  {
    name: "unknown method token",
    source: "RFC 9110 §9.1 (501/405 for unrecognized methods); llhttp HPE_INVALID_METHOD",
    bytes: get("/", "PROPFIND"),
    status: 405,
    reason: "method_not_allowed",
  },
  {
    name: "lower-case method",
    source: "RFC 9110 §9.1 (methods are case-sensitive): 'get' is not GET",
    bytes: get("/", "get"),
    status: 400,
  },
];

describe("path and target tricks", () => {
  let stack: TestStack;
  let acme: GuardedTenant;
  let g: Guarded;

  beforeAll(async () => {
    stack = await startTestStack();
    acme = await guardedTenant(stack, "acme");
    g = { stack, sentinels: [acme.sentinel] };
  });
  afterAll(async () => {
    await stack?.close();
    await acme?.sentinel.close();
  });

  it("forwards ordinary targets untouched, dots inside names included (control)", async () => {
    for (const target of ["/static/app.v2.js", "/a/.well-known/x", "/files/..hidden", "/q?path=../x", "/enc%2Fslash"]) {
      const ex = await exchange(stack.port, req(`GET ${target} HTTP/1.1`, `Host: ${A}`, "Connection: close"));
      expect(
        ex.responses.map((r) => r.status),
        target,
      ).toEqual([200]);
      expect(acme.sentinel.requests.at(-1)?.url).toBe(target);
    }
  });

  for (const attack of attacks) {
    it(`${attack.name} — ${attack.source}`, async () => {
      await expectRefused(g, attack);
    });
  }
});
