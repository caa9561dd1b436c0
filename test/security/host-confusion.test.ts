/**
 * Host confusion: every way of making the edge and an app disagree about which
 * tenant a request is for. Only the exact Host — one of it, a name, normalized by
 * the one rule in docs/hostnames.md — selects a tenant; anything else is refused
 * before any upstream is contacted (contract rules 1 and 8).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestStack, type TestStack } from "../helpers/stack.ts";
import { type Attack, exchange, expectRefused, type Guarded, type GuardedTenant, guardedTenant, req } from "./lib.ts";

const A = "acme.localhost";
const G = "globex.localhost";

const attacks: Attack[] = [
  {
    name: "two Host headers naming two tenants",
    source: "RFC 9112 §3.2 (more than one Host: 400); PortSwigger 'duplicate Host' / Envoy CVE-2020-25017 class",
    bytes: req("GET / HTTP/1.1", `Host: ${A}`, `Host: ${G}`),
    status: 400,
    reason: "duplicate_host",
  },
  {
    name: "two Host headers with the same value",
    source: "RFC 9112 §3.2 (any request with more than one Host field)",
    bytes: req("GET / HTTP/1.1", `Host: ${A}`, `host: ${A}`),
    status: 400,
    reason: "duplicate_host",
  },
  {
    name: "Host list 'acme, globex' in one field",
    source: "RFC 9110 §7.2 (Host is a single authority, not a list)",
    bytes: req("GET / HTTP/1.1", `Host: ${A}, ${G}`),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "no Host on HTTP/1.1",
    source: "RFC 9112 §3.2 (MUST respond 400 to a 1.1 request lacking Host)",
    bytes: req("GET / HTTP/1.1", "X-Forwarded-Host: acme.localhost"),
    status: 400,
    reason: "missing_host",
  },
  {
    name: "absolute-form target naming another tenant",
    source: "RFC 9112 §3.2.2 (absolute-form vs Host); PortSwigger 'Practical HTTP Host header attacks' (absolute URL)",
    bytes: req(`GET http://${G}/account HTTP/1.1`, `Host: ${A}`),
    status: 400,
    reason: "absolute_form_mismatch",
  },
  {
    name: "absolute-form target with userinfo",
    source: "RFC 9110 §4.2.4 (userinfo deprecated; 'http://a@b' parser confusion, Orange Tsai SSRF research)",
    bytes: req(`GET http://${A}@${G}/ HTTP/1.1`, `Host: ${A}`),
    status: 400,
    reason: "absolute_form_mismatch",
  },
  {
    name: "IPv4 literal Host",
    source: "contract rule 1 (no default tenant); nginx default_server fall-through",
    bytes: req("GET / HTTP/1.1", "Host: 127.0.0.1"),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "IPv4 literal as a 32-bit integer",
    source: "WHATWG URL IPv4 parser (2130706433 = 127.0.0.1); SSRF filter bypass class",
    bytes: req("GET / HTTP/1.1", "Host: 2130706433"),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "IPv4 literal in octal and hex",
    source: "inet_aton legacy forms (0177.0.0.1, 0x7f.1); SSRF filter bypass class",
    bytes: req("GET / HTTP/1.1", "Host: 0x7f.0.0.1"),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "bracketed IPv6 literal Host",
    source: "RFC 9110 §4.2.1 (IP-literal); contract rule 1",
    bytes: req("GET / HTTP/1.1", "Host: [::1]:80"),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "wildcard Host",
    source: "contract rule 1 (no wildcard); Traefik HostRegexp / nginx wildcard server_name mismatches",
    bytes: req("GET / HTTP/1.1", "Host: *.localhost"),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "Host with two ports",
    source: "RFC 9110 §4.2.1, §7.2 (uri-host [ ':' port ])",
    bytes: req("GET / HTTP/1.1", `Host: ${A}:80:80`),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "Host with port 0 or out of range",
    source: "RFC 9110 §4.2.1 (a port is 1–65535)",
    bytes: req("GET / HTTP/1.1", `Host: ${A}:99999`),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "Host with userinfo",
    source: "RFC 9110 §4.2.4; 'Host: a@b' proxy confusion (PortSwigger 'Cracking the lens')",
    bytes: req("GET / HTTP/1.1", `Host: ${G}@${A}`),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "Host with a path",
    source: "RFC 9110 §7.2 (Host is uri-host [:port]); PortSwigger 'Cracking the lens'",
    bytes: req("GET / HTTP/1.1", `Host: ${A}/../${G}`),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "Host with an underscore label",
    source: "RFC 1123 §2.1 (LDH labels)",
    bytes: req("GET / HTTP/1.1", "Host: acme_corp.localhost"),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "Host with raw UTF-8 (homograph of acme)",
    source: "RFC 5890 §2.3.2.1 (only A-labels on the wire); IDN homograph attacks",
    bytes: Buffer.concat([
      Buffer.from("GET / HTTP/1.1\r\nHost: "),
      Buffer.from("аcme.localhost", "utf8"),
      Buffer.from("\r\n\r\n"),
    ]),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "Host with an invalid A-label",
    source: "RFC 5891 §4.2.3.1 (xn-- must decode); RFC 5891 §5.4",
    bytes: req("GET / HTTP/1.1", "Host: xn--zz.localhost"),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "Host with two trailing dots",
    source: "RFC 1034 §3.1 (one root label only)",
    bytes: req("GET / HTTP/1.1", `Host: ${A}..`),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "Host with a NUL byte",
    source: "Envoy CVE-2019-9900 (NUL in header values bypasses routing)",
    bytes: req("GET / HTTP/1.1", `Host: ${G}\x00.${A}`),
    status: 400,
  },
  {
    name: "empty Host",
    source: "RFC 9110 §7.2 (an empty Host is for URIs without authority, never a tenant)",
    bytes: req("GET / HTTP/1.1", "Host: "),
    status: 400,
    reason: "invalid_host",
  },
  {
    name: "unknown subdomain of a tenant (no wildcard routing)",
    source: "contract rule 1; Traefik default-router / nginx catch-all fall-through",
    bytes: req("GET / HTTP/1.1", `Host: admin.${A}`),
    status: 404,
    reason: "unknown_host",
  },
  {
    name: "tenant name as a suffix of an attacker domain",
    source: "contract rule 1 (exact match only; suffix-matching vhost bugs)",
    bytes: req("GET / HTTP/1.1", `Host: ${A}.evil.example`),
    status: 404,
    reason: "unknown_host",
  },
];

describe("host confusion", () => {
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

  it("routes the normalized forms of a Host to the same tenant (control)", async () => {
    for (const host of ["ACME.localhost", `${A}.`, `${A}:8080`, `Acme.LocalHost.:443`]) {
      const ex = await exchange(stack.port, req("GET /x HTTP/1.1", `Host: ${host}`, "Connection: close"));
      expect(
        ex.responses.map((r) => r.status),
        host,
      ).toEqual([200]);
      expect(JSON.parse(ex.responses[0]!.body).app).toBe("acme-app");
    }
    expect(globex.sentinel.requests).toHaveLength(0);
  });

  it("an absolute-form target naming the same host is routed by it (control)", async () => {
    const ex = await exchange(stack.port, req(`GET http://${A}:8080/abs?x=1 HTTP/1.1`, `Host: ${A}`, "Connection: close"));
    expect(ex.responses.map((r) => r.status)).toEqual([200]);
    expect(acme.sentinel.requests.at(-1)?.url).toBe("/abs?x=1");
  });

  for (const attack of attacks) {
    it(`${attack.name} — ${attack.source}`, async () => {
      await expectRefused(g, attack);
    });
  }
});
