/**
 * Request smuggling and framing: every way of making two parsers disagree about
 * where a request ends. Each case must end in one refusal, no upstream byte, one
 * audit event, and — for framing — a closed connection, so the bytes after the
 * ambiguity are never read as a second request (RFC 9112 §6.3, §11.2).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestStack, type TestStack } from "../helpers/stack.ts";
import { type Attack, expectRefused, type Guarded, type GuardedTenant, guardedTenant, req } from "./lib.ts";

const H = "acme.localhost";
// A request that would reach acme's app if it were ever parsed as one.
const SMUGGLED = `GET /smuggled HTTP/1.1\r\nHost: ${H}\r\n\r\n`;

const attacks: Attack[] = [
  {
    name: "CL.TE: Content-Length and Transfer-Encoding together",
    source: "RFC 9112 §6.1 (CL.TE, PortSwigger 'HTTP desync attacks')",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    status: 400,
    close: true,
  },
  {
    name: "TE.CL: Transfer-Encoding first, then Content-Length",
    source: "RFC 9112 §6.3 item 3",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n1\r\nA\r\n0\r\n\r\n${SMUGGLED}`,
    status: 400,
    close: true,
  },
  {
    name: "two different Content-Length values",
    source: "RFC 9112 §6.3 item 5; RFC 9110 §8.6",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n${SMUGGLED}`,
    status: 400,
    close: true,
  },
  {
    name: "Content-Length list '0, 0'",
    source: "RFC 9110 §8.6 (a list value is not a length)",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nContent-Length: 0, 0\r\n\r\n${SMUGGLED}`,
    status: 400,
    close: true,
  },
  {
    name: "space inside Content-Length digits",
    source: "Node.js CVE-2018-7159 (spaces ignored inside Content-Length)",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nContent-Length: 1 0\r\n\r\n0123456789`,
    status: 400,
    close: true,
  },
  {
    name: "signed Content-Length '+5'",
    source: "RFC 9110 §8.6 (Content-Length = 1*DIGIT)",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nContent-Length: +5\r\n\r\nhello`,
    status: 400,
    close: true,
  },
  {
    name: "empty Content-Length",
    source: "HAProxy CVE-2023-40225 (empty Content-Length forwarded)",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nContent-Length: \r\n\r\n${SMUGGLED}`,
    status: 400,
    close: true,
  },
  {
    name: "Content-Length beyond 2^64",
    source: "RFC 9110 §8.6 (a length that overflows is invalid); llhttp HPE_INVALID_CONTENT_LENGTH",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nContent-Length: 184467440737095516160\r\n\r\n`,
    status: 400,
    close: true,
  },
  {
    name: "space before Content-Length header name",
    source: "Node.js CVE-2024-27982 (Content-Length obfuscation with a leading space)",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\n Content-Length: 44\r\n\r\n${SMUGGLED}`,
    status: 400,
    close: true,
  },
  {
    name: "whitespace between header name and colon",
    source: "RFC 9112 §5.1 (MUST reject with 400); PortSwigger TE.TE obfuscation",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    status: 400,
    close: true,
  },
  {
    name: "Transfer-Encoding with vertical tab before 'chunked'",
    source: "HAProxy CVE-2019-18277 (\\x0b before chunked)",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nTransfer-Encoding: \x0bchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    status: 400,
    close: true,
  },
  {
    name: "Transfer-Encoding 'chunked, identity'",
    source: "llhttp CVE-2022-32213 (Transfer-Encoding not correctly validated)",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`,
    status: 400,
    close: true,
  },
  {
    name: "Transfer-Encoding 'xchunked'",
    source: "RFC 9112 §6.1 (unknown coding: 501/400 and close); PortSwigger TE.TE obfuscation",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`,
    status: 400,
    close: true,
  },
  {
    name: "Transfer-Encoding header repeated",
    source: "RFC 9112 §6.1; PortSwigger TE.TE (two Transfer-Encoding fields)",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n`,
    status: 400,
    close: true,
  },
  {
    name: "Transfer-Encoding continued on an obs-fold line",
    source: "llhttp CVE-2022-32215 (multi-line Transfer-Encoding); RFC 9112 §5.2",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nTransfer-Encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
    close: true,
  },
  {
    name: "Transfer-Encoding on an HTTP/1.0 request",
    source: "RFC 9112 §6.1 (chunked in HTTP/1.0 is faulty framing: close)",
    bytes: `POST / HTTP/1.0\r\nHost: ${H}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
    close: true,
  },
  {
    name: "header line ended by a bare CR",
    source: "llhttp CVE-2023-30589 (CR without LF accepted as line end)",
    bytes: `GET / HTTP/1.1\r\nHost: ${H}\r\nX-A: 1\rContent-Length: 44\r\n\r\n${SMUGGLED}`,
    status: 400,
    close: true,
  },
  {
    name: "header line ended by a bare LF",
    source: "llhttp CVE-2022-32214 / CVE-2022-35256 (header fields not terminated with CRLF)",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\nContent-Length: 44\r\n\r\n${SMUGGLED}`,
    status: 400,
    close: true,
  },
  {
    name: "empty header name",
    source: "HAProxy CVE-2023-25725 (empty header name drops the following headers)",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\n: x\r\nContent-Length: 44\r\n\r\n${SMUGGLED}`,
    status: 400,
    close: true,
  },
  {
    name: "chunk size with a bare-LF chunk extension",
    source: "RFC 9112 §7.1 (chunk lines end in CRLF); 'Funky chunks' chunk-extension smuggling research",
    bytes: `POST / HTTP/1.1\r\nHost: ${H}\r\nTransfer-Encoding: chunked\r\n\r\n2;\n\nxx\r\n0\r\n\r\n`,
    status: 400,
    close: true,
  },
  {
    name: "h2c upgrade smuggling",
    source: "BishopFox 'h2c smuggling' (Traefik, Envoy, nginx advisories); RFC 9113 §3.1",
    bytes: req(
      `GET / HTTP/1.1`,
      `Host: ${H}`,
      "Upgrade: h2c",
      "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
      "Connection: Upgrade, HTTP2-Settings",
    ),
    status: 501,
    reason: "upgrade_not_supported",
    close: true,
  },
  {
    name: "WebSocket upgrade to reach an unguarded tunnel",
    source: "RFC 9110 §7.8; 'WebSocket smuggling' through reverse proxies (0ang3el)",
    bytes: req(
      `GET /ws HTTP/1.1`,
      `Host: ${H}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
    ),
    status: 501,
    reason: "upgrade_not_supported",
    close: true,
  },
  {
    name: "CONNECT tunnel through the edge",
    source: "RFC 9110 §9.3.6 (open-proxy abuse; nginx/Envoy CONNECT advisories)",
    bytes: req(`CONNECT globex.localhost:443 HTTP/1.1`, `Host: globex.localhost:443`),
    status: 405,
    reason: "method_not_allowed",
    close: true,
  },
  {
    name: "HTTP/2 prior-knowledge preface on the HTTP/1.1 port",
    source: "RFC 9113 §3.4 (h2 preface); h2c smuggling",
    bytes: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    status: 400,
    close: true,
  },
];

describe("request smuggling and framing", () => {
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

  it("serves a well-framed request (control: the tenant is reachable)", async () => {
    const { exchange } = await import("./lib.ts");
    const ex = await exchange(stack.port, `POST / HTTP/1.1\r\nHost: ${H}\r\nContent-Length: 5\r\n\r\nhello`);
    expect(ex.responses.map((r) => r.status)).toEqual([200]);
    expect(acme.sentinel.requests.at(-1)?.method).toBe("POST");
  });

  for (const attack of attacks) {
    it(`${attack.name} — ${attack.source}`, async () => {
      await expectRefused(g, attack);
      expect(acme.sentinel.requests.some((r) => r.url === "/smuggled")).toBe(false);
    });
  }

  it("an invalid chunk arriving after the body began streaming: 400, connection closed, one audit event, no complete request upstream — RFC 9112 §7.1, 'Funky chunks'", async () => {
    const before = acme.sentinel.requests.length;
    const auditBefore = stack.audit.length;
    const { exchange } = await import("./lib.ts");
    const ex = await exchange(
      stack.port,
      `POST /mid HTTP/1.1\r\nHost: ${H}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`,
      {
        drip: { chunks: [`zz\r\n${SMUGGLED}`], everyMs: 300 },
        timeoutMs: 4_000,
      },
    );
    expect(ex.responses.map((r) => r.status)).toEqual([400]);
    expect(ex.closed).toBe(true);
    const requestId = ex.responses[0]!.headers["x-request-id"] as string;
    const events = await stack.auditFor(requestId);
    expect(events).toHaveLength(1);
    expect(events[0]?.reason).toBe("malformed_request");
    expect(events[0]?.tenantId).toBe(acme.id);
    await Promise.all(stack.routers.map((r) => r.audit.flush()));
    expect(stack.audit.length - auditBefore).toBe(1);
    expect(acme.sentinel.requests.length).toBe(before);
  });
});
