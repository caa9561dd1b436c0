/**
 * Oversized and slow requests: header bytes and counts past the limits (431), bodies
 * past a tenant's limit (413, declared or streamed), and clients that send slowly or
 * not at all (408 within the configured timeouts). Small timeouts here so the suite
 * stays fast; no assertion on how long anything took beyond "it ended".
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestStack, type TestStack } from "../helpers/stack.ts";
import { type Attack, exchange, expectRefused, type Guarded, type GuardedTenant, guardedTenant, req } from "./lib.ts";

const A = "acme.localhost";
const MAX_BODY = 1_000;

const headersOf = (n: number, size: number) => Array.from({ length: n }, (_, i) => `X-Pad-${i}: ${"a".repeat(size)}`);

const attacks: Attack[] = [
  {
    name: "header block past the size limit",
    source: "Node.js CVE-2018-12121 (denial of service with large HTTP headers); RFC 6585 §5",
    bytes: req("GET / HTTP/1.1", `Host: ${A}`, ...headersOf(40, 500)),
    status: 431,
    reason: "headers_too_large",
    close: true,
  },
  {
    name: "one huge header value",
    source: "nginx large_client_header_buffers / Envoy max_request_headers_kb (CVE-2019-18801 class)",
    bytes: req("GET / HTTP/1.1", `Host: ${A}`, `Cookie: a=${"x".repeat(20_000)}`),
    status: 431,
    reason: "headers_too_large",
    close: true,
  },
  {
    name: "more header fields than the count limit",
    source: "RFC 6585 §5; HAProxy tune.http.maxhdr / Envoy max_headers_count",
    bytes: req("GET / HTTP/1.1", `Host: ${A}`, ...headersOf(150, 1)),
    status: 431,
    reason: "headers_too_large",
    close: true,
  },
  {
    name: "request-target past the header size limit",
    source: "RFC 9112 §3 (a server bounds the request-line); RFC 6585 §5",
    bytes: req(`GET /${"a".repeat(20_000)} HTTP/1.1`, `Host: ${A}`),
    status: 431,
    reason: "headers_too_large",
    close: true,
  },
  {
    name: "declared body past the tenant's limit",
    source: "RFC 9110 §15.5.14 (413); refused before the upstream is contacted",
    bytes: `POST /upload HTTP/1.1\r\nHost: ${A}\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n`,
    status: 413,
    reason: "body_too_large",
    close: true,
  },
  {
    name: "slowloris: header lines trickled, never finished",
    source: "CVE-2007-6750 (Slowloris); Node.js CVE-2018-12122 (Slowloris HTTP denial of service)",
    bytes: `GET / HTTP/1.1\r\nHost: ${A}\r\n`,
    status: 408,
    reason: "request_timeout",
    close: true,
    options: {
      drip: { chunks: ["X-a: 1\r\n", "X-b: 2\r\n", "X-c: 3\r\n", "X-d: 4\r\n", "X-e: 5\r\n"], everyMs: 100 },
      timeoutMs: 5_000,
    },
  },
  {
    name: "connection opened and left silent",
    source: "Node.js CVE-2019-5737 (idle connections held open); RFC 9112 §9.5",
    bytes: "",
    status: 408,
    reason: "request_timeout",
    close: true,
    options: { silent: true, timeoutMs: 5_000 },
  },
  {
    name: "Content-Length declared, body never sent, on an unknown host",
    source: "Traefik CVE-2024-28869 (Content-Length without a body holds the connection)",
    bytes: `POST / HTTP/1.1\r\nHost: nobody.localhost\r\nContent-Length: 100\r\n\r\n`,
    status: 404,
    reason: "unknown_host",
    close: true,
    options: { timeoutMs: 5_000, quietMs: 1_500 },
  },
];

describe("oversized and slow requests", () => {
  let stack: TestStack;
  let acme: GuardedTenant;
  let g: Guarded;

  beforeAll(async () => {
    stack = await startTestStack({ router: { requestHeadersTimeoutMs: 300, requestTimeoutMs: 1000 } });
    acme = await guardedTenant(stack, "acme", { limits: { maxBodyBytes: MAX_BODY } });
    g = { stack, sentinels: [acme.sentinel] };
  });
  afterAll(async () => {
    await stack?.close();
    await acme?.sentinel.close();
  });

  it("accepts a body at the limit (control)", async () => {
    const ex = await exchange(
      stack.port,
      `POST /ok HTTP/1.1\r\nHost: ${A}\r\nContent-Length: ${MAX_BODY}\r\nConnection: close\r\n\r\n${"b".repeat(MAX_BODY)}`,
    );
    expect(ex.responses.map((r) => r.status)).toEqual([200]);
  });

  for (const attack of attacks) {
    it(`${attack.name} — ${attack.source}`, async () => {
      await expectRefused(g, attack);
    });
  }

  it("chunked body past the tenant's limit is cut off while streaming (413, upstream never sees a whole request) — RFC 9110 §15.5.14", async () => {
    const before = acme.sentinel.requests.length;
    const chunk = `${(400).toString(16)}\r\n${"c".repeat(400)}\r\n`;
    const ex = await exchange(
      stack.port,
      `POST /stream HTTP/1.1\r\nHost: ${A}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk}${chunk}${chunk}${chunk}0\r\n\r\n`,
      { quietMs: 800 },
    );
    expect(ex.responses.map((r) => r.status)).toEqual([413]);
    expect(ex.closed).toBe(true);
    const requestId = ex.responses[0]!.headers["x-request-id"] as string;
    const events = await stack.auditFor(requestId);
    expect(events).toHaveLength(1);
    expect(events[0]?.reason).toBe("body_too_large");
    expect(events[0]?.status).toBe(413);
    expect(acme.sentinel.requests.length).toBe(before);
  });

  it("a body trickled slower than the request timeout ends in 408 and one audit event; the upstream never sees a whole request — Traefik CVE-2024-28869, Node.js CVE-2018-12122", async () => {
    const before = acme.sentinel.requests.length;
    const auditBefore = stack.audit.length;
    const ex = await exchange(stack.port, `POST /slow HTTP/1.1\r\nHost: ${A}\r\nContent-Length: 500\r\n\r\n`, {
      drip: { chunks: Array.from({ length: 40 }, () => "x"), everyMs: 100 },
      timeoutMs: 6_000,
    });
    expect(ex.responses.map((r) => r.status)).toEqual([408]);
    expect(ex.closed).toBe(true);
    const requestId = ex.responses[0]!.headers["x-request-id"] as string;
    const events = await stack.auditFor(requestId);
    expect(events).toHaveLength(1);
    expect(events[0]?.reason).toBe("request_timeout");
    expect(events[0]?.tenantId).toBe(acme.id);
    await Promise.all(stack.routers.map((r) => r.audit.flush()));
    expect(stack.audit.length - auditBefore).toBe(1);
    expect(acme.sentinel.requests.length).toBe(before);
  });

  it("a slow second request on a kept-alive connection is cut off too — Node.js CVE-2019-5737", async () => {
    const ex = await exchange(stack.port, `GET /first HTTP/1.1\r\nHost: ${A}\r\n\r\nGET /second HTTP/1.1\r\n`, {
      drip: { chunks: Array.from({ length: 30 }, () => "X-slow: 1\r\n"), everyMs: 100 },
      timeoutMs: 6_000,
    });
    expect(ex.responses.map((r) => r.status)).toEqual([200, 408]);
    expect(ex.closed).toBe(true);
    const events = await stack.auditFor(ex.responses[1]!.headers["x-request-id"] as string);
    expect(events).toHaveLength(1);
    expect(acme.sentinel.requests.some((r) => r.url === "/second")).toBe(false);
  });
});
