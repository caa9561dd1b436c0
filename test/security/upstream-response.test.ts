/**
 * Response-side attacks from a malicious upstream, served by a raw `net` server:
 * conflicting framing, response splitting, bytes past the body, unsolicited
 * responses. The edge must never pass a byte of one response to another client,
 * must close (never reuse) the poisoned upstream connection, and must not let a
 * truncated answer look complete (RFC 9112 §6.3, §11.2; response queue poisoning).
 */
import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, startTestStack, type TestStack } from "../helpers/stack.ts";
import { exchange, req } from "./lib.ts";

const POISON = "SMUGGLED";
const smuggled = `HTTP/1.1 200 OK\r\nContent-Length: ${POISON.length}\r\nSet-Cookie: session=attacker\r\n\r\n${POISON}`;

interface Conn {
  id: number;
  closed: boolean;
  requests: string[];
}

type Script = (socket: Socket) => void;

/** A raw upstream: the next request gets the queued script, any other a benign answer. */
async function startEvil() {
  const conns: Conn[] = [];
  const scripts: Script[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    const c: Conn = { id: conns.length, closed: false, requests: [] };
    conns.push(c);
    sockets.add(socket);
    let buf = "";
    socket.on("data", (d: Buffer) => {
      buf += d.toString("latin1");
      for (let end = buf.indexOf("\r\n\r\n"); end !== -1; end = buf.indexOf("\r\n\r\n")) {
        c.requests.push((buf.slice(0, end).split("\r\n")[0] as string).split(" ")[1] as string);
        buf = buf.slice(end + 4);
        const script = scripts.shift();
        if (script) script(socket);
        else {
          const body = `ok-${c.id}`;
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        }
      }
    });
    socket.on("close", () => (c.closed = true));
    socket.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    conns,
    scripts,
    connFor: (path: string) => conns.find((c) => c.requests.includes(path)),
    close: () =>
      new Promise<void>((r) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => r());
      }),
  };
}

interface ResponseAttack {
  name: string;
  source: string;
  script: Script;
  /** Status the attacked client sees (0: the connection is cut after the headers). */
  status: number;
  /** The attacked client's connection must be cut (a truncated answer must not look whole). */
  cut?: boolean;
}

const attacks: ResponseAttack[] = [
  {
    name: "Content-Length and Transfer-Encoding together in a response",
    source: "RFC 9112 §6.3 item 3 (response smuggling); undici/llhttp strict framing",
    script: (s) =>
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n${smuggled}`),
    status: 502,
  },
  {
    name: "two different Content-Length values in a response",
    source: "RFC 9112 §6.3 item 5 (a recipient MUST treat it as unrecoverable)",
    script: (s) => s.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 10\r\n\r\nok${smuggled}`),
    status: 502,
  },
  {
    name: "response splitting with a bare LF inside the header block",
    source: "CWE-113 (HTTP response splitting); llhttp CVE-2022-32214 (bare LF as line end)",
    script: (s) => s.write(`HTTP/1.1 200 OK\r\nX-Note: a\nSet-Cookie: session=attacker\r\nContent-Length: 2\r\n\r\nok`),
    status: 502,
  },
  {
    name: "response splitting with a bare CR inside a header value",
    source: "CWE-113; llhttp CVE-2023-30589 (CR without LF accepted)",
    script: (s) => s.write(`HTTP/1.1 200 OK\r\nX-Note: a\rSet-Cookie: session=attacker\r\nContent-Length: 2\r\n\r\nok`),
    status: 502,
  },
  {
    name: "a second response glued after the body",
    source: "response queue poisoning (PortSwigger 'HTTP/2: the sequel is always worse'); RFC 9112 §6.3",
    script: (s) => s.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok${smuggled}`),
    status: 200,
  },
  {
    name: "an unsolicited response sent later on the idle connection",
    source: "response queue poisoning / desync (RFC 9112 §9.3: a response with no request is an error)",
    script: (s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok`);
      setTimeout(() => s.write(smuggled), 50);
    },
    status: 200,
  },
  {
    name: "an invalid chunk size mid-body",
    source: "RFC 9112 §7.1 (chunk-size is HEXDIG); llhttp HPE_INVALID_CHUNK_SIZE",
    script: (s) => s.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n${smuggled}`),
    status: 0,
    cut: true,
  },
  {
    name: "a body shorter than its Content-Length, then close",
    source: "RFC 9112 §8 (incomplete message: the recipient MUST NOT treat it as complete)",
    script: (s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial`);
      setTimeout(() => s.destroy(), 30);
    },
    status: 0,
    cut: true,
  },
  {
    name: "a NUL byte in a response header",
    source: "Envoy CVE-2019-9900 (NUL in header values), response direction",
    script: (s) => s.write(`HTTP/1.1 200 OK\r\nX-Note: a\x00b\r\nContent-Length: 2\r\n\r\nok`),
    status: 502,
  },
  {
    name: "a 101 Switching Protocols answer to a plain request",
    source: "RFC 9110 §15.2.2 (101 only in answer to Upgrade); h2c/WebSocket tunnel smuggling from the upstream side",
    script: (s) => s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n${smuggled}`),
    status: 502,
  },
];

describe("response-side attacks from a malicious upstream", () => {
  let stack: TestStack;
  let evil: Awaited<ReturnType<typeof startEvil>>;
  const host = "victim.localhost";

  beforeAll(async () => {
    stack = await startTestStack();
    await stack.tenant("victim");
    evil = await startEvil();
    expect((await stack.admin("PUT", "/v1/tenants/victim/upstreams", { urls: [evil.url] })).status).toBe(200);
    await stack.cp.publisher.flush();
  });
  afterAll(async () => {
    await stack?.close();
    await evil?.close();
  });

  it("a well-behaved answer passes (control)", async () => {
    const ex = await exchange(stack.port, req("GET /control HTTP/1.1", `Host: ${host}`, "Connection: close"));
    expect(ex.responses.map((r) => r.status)).toEqual([200]);
    expect(ex.responses[0]?.body).toMatch(/^ok-\d+$/);
  });

  // RFC 9110 §8.6: no Content-Length in a 204. An upstream that sends one must not
  // make the edge send one: a lenient hop after the router could read the next
  // response on the connection as the 204's body. Both forwarders: a request without
  // a body (the router's own client) and one with a body (undici, which cuts the
  // exchange when a 204 declares a body, so the common `Content-Length: 0` there).
  for (const [label, request, declared] of [
    ["without a body", (path: string) => req(`GET ${path} HTTP/1.1`, `Host: ${host}`), 40],
    [
      "with a body",
      (path: string) => `${req(`POST ${path} HTTP/1.1`, `Host: ${host}`, "Content-Length: 2").slice(0, -2)}\r\nhi`,
      0,
    ],
  ] as const) {
    it(`a 204 with a Content-Length reaches the client without one (request ${label})`, async () => {
      const path = `/no-content-${label.replaceAll(" ", "-")}`;
      evil.scripts.push((s) => s.write(`HTTP/1.1 204 No Content\r\nContent-Length: ${declared}\r\n\r\n`));
      // The next request on the same connection, once the first has been answered.
      const ex = await exchange(stack.port, request(path), {
        quietMs: 500,
        drip: { chunks: [req(`GET ${path}-next HTTP/1.1`, `Host: ${host}`)], everyMs: 300 },
      });
      const [first, second] = ex.raw.split(/(?=HTTP\/1\.1 )/);
      expect(first).toMatch(/^HTTP\/1\.1 204 /);
      expect(first?.toLowerCase()).not.toContain("content-length");
      expect(second).toMatch(/^HTTP\/1\.1 200 /);
      expect(second).toMatch(/ok-\d+$/);
    });
  }

  attacks.forEach((attack, i) => {
    it(`${attack.name} — ${attack.source}`, async () => {
      const path = `/attack-${i}`;
      evil.scripts.push(attack.script);
      const ex = await exchange(stack.port, req(`GET ${path} HTTP/1.1`, `Host: ${host}`), { quietMs: 500 });
      const poisoned = evil.connFor(path);
      expect(poisoned, "the attack reached the upstream").toBeDefined();

      // The attacked client: never the smuggled bytes or headers.
      expect(ex.raw).not.toContain(POISON);
      expect(ex.raw).not.toContain("session=attacker");
      if (attack.cut) {
        // Headers went out, then the connection was cut: no complete answer.
        expect(ex.closed).toBe(true);
        expect(ex.responses[0]?.status).toBe(200);
        const declared = Number(ex.responses[0]?.headers["content-length"] ?? Number.NaN);
        const complete =
          ex.responses[0]?.headers["transfer-encoding"] === "chunked"
            ? ex.raw.endsWith("0\r\n\r\n")
            : ex.responses[0]?.body.length === declared;
        expect(complete).toBe(false);
      } else {
        expect(ex.responses.map((r) => r.status)).toEqual([attack.status]);
      }
      const requestId = ex.raw.match(/x-request-id: (\S+)/i)?.[1] as string;
      expect(requestId).toMatch(/^req_/);
      const events = await stack.auditFor(requestId);
      expect(events).toHaveLength(1);
      if (attack.status === 502) expect(events[0]?.reason).toBe("upstream_error");

      // The poisoned upstream connection is closed by the edge, never reused.
      await eventually(() => poisoned!.closed, 2_000);
      const next = await exchange(stack.port, req(`GET ${path}-next HTTP/1.1`, `Host: ${host}`, "Connection: close"));
      expect(next.responses.map((r) => r.status)).toEqual([200]);
      expect(next.raw).not.toContain(POISON);
      expect(next.raw).not.toContain("session=attacker");
      const served = evil.connFor(`${path}-next`);
      expect(served).toBeDefined();
      expect(served!.id).not.toBe(poisoned!.id);
      expect(next.responses[0]?.body).toBe(`ok-${served!.id}`);
    });
  });
});
