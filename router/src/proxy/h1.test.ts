/**
 * The h1 upstream client on real sockets: a raw `net` upstream answers scripted bytes,
 * a node:http front server forwards through the client, and a real client reads the
 * front's answer.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createServer as createHttpServer, get, type IncomingMessage, type Server as HttpServer } from "node:http";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { writeRefusal } from "../errors.ts";
import { H1Client, type H1Options, requestHead } from "./h1.ts";
import type { ForwardResult } from "./index.ts";

type Script = (socket: Socket, head: string) => void;

interface Upstream {
  url: string;
  /** Connections accepted so far. */
  accepted: number;
  /** Request heads received, in order. */
  heads: string[];
  /** Connection number (0-based) each request arrived on. */
  connOf: number[];
  /** Closed connections, by number. */
  closed: Set<number>;
  /** Next requests get these scripts; any other a 200 `ok-<connection>`. */
  scripts: Script[];
  close(): Promise<void>;
}

async function upstream(): Promise<Upstream> {
  const sockets = new Set<Socket>();
  const u: Upstream = {
    url: "",
    accepted: 0,
    heads: [],
    connOf: [],
    closed: new Set(),
    scripts: [],
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server: Server = createServer((socket) => {
    const id = u.accepted++;
    sockets.add(socket);
    let buf = "";
    socket.on("data", (d: Buffer) => {
      buf += d.toString("latin1");
      for (let end = buf.indexOf("\r\n\r\n"); end !== -1; end = buf.indexOf("\r\n\r\n")) {
        const head = buf.slice(0, end + 4);
        buf = buf.slice(end + 4);
        u.heads.push(head);
        u.connOf.push(id);
        const script = u.scripts.shift();
        if (script) script(socket, head);
        else socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${`ok-${id}`.length}\r\n\r\nok-${id}`);
      }
    });
    socket.on("close", () => {
      u.closed.add(id);
      sockets.delete(socket);
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  u.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return u;
}

/** An origin on which nothing listens. */
async function deadOrigin(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  await new Promise<void>((r) => s.close(() => r()));
  return url;
}

interface Front {
  port: number;
  client: H1Client;
  origins: string[];
  results: ForwardResult[];
  close(): Promise<void>;
}

async function front(options: Partial<H1Options> = {}): Promise<Front> {
  const client = new H1Client({ connectTimeoutMs: 1_000, headersTimeoutMs: 300, bodyTimeoutMs: 300, connections: 4, ...options });
  const f: Front = { port: 0, client, origins: [], results: [], close: async () => {} };
  const server: HttpServer = createHttpServer((req, res) => {
    const headers = ["host", "app.test", "x-request-id", "req_test"];
    const extra = req.headers["x-extra"];
    if (typeof extra === "string") headers.push("x-extra", extra.replace(/\\r/g, "\r"));
    client.forward(
      res,
      {
        origins: f.origins,
        start: 0,
        method: req.method as string,
        path: req.url as string,
        headers,
        body: null,
        maxBodyBytes: null,
        responseHeaders: { "x-request-id": "req_test" },
      },
      (r, reason) => writeRefusal(r, reason, "req_test"),
      (result) => f.results.push(result),
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  f.port = (server.address() as AddressInfo).port;
  f.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await client.close();
  };
  return f;
}

interface Answer {
  status: number;
  headers: IncomingMessage["headers"];
  rawHeaders: string[];
  body: Buffer;
  /** The whole message as framed arrived (false: cut short). */
  complete: boolean;
}

/** One request through the front, on its own connection. */
function request(port: number, path = "/", options: { method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve) => {
    const req = get({ port, host: "127.0.0.1", path, method: options.method ?? "GET", agent: false, headers: options.headers });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      let settled = false;
      const settle = () => {
        if (settled) return;
        settled = true;
        resolve({
          status: res.statusCode as number,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks),
          complete: res.complete,
        });
      };
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", settle);
      res.on("error", settle);
      res.on("close", settle);
    });
    req.on("error", () => resolve({ status: 0, headers: {}, rawHeaders: [], body: Buffer.alloc(0), complete: false }));
  });
}

async function eventually(check: () => boolean, ms = 2_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

const ok = (body: string, extra = "") => `HTTP/1.1 200 OK\r\n${extra}Content-Length: ${body.length}\r\n\r\n${body}`;

describe("h1 upstream client", () => {
  let up: Upstream;
  let fr: Front;

  beforeAll(async () => {
    up = await upstream();
  });
  afterAll(async () => {
    await up.close();
  });
  afterEach(async () => {
    await fr?.close();
    up.scripts.length = 0;
  });
  const setup = async (options: Partial<H1Options> = {}, origins?: string[]) => {
    fr = await front(options);
    fr.origins.push(...(origins ?? [up.url]));
    return fr;
  };
  const lastConn = () => up.connOf[up.connOf.length - 1] as number;

  describe("request", () => {
    it("writes one head: request line, the prepared headers in order, nothing added", async () => {
      await setup();
      const before = up.heads.length;
      const a = await request(fr.port, "/a/b?c=d");
      expect(a.status).toBe(200);
      expect(up.heads[before]).toBe("GET /a/b?c=d HTTP/1.1\r\nhost: app.test\r\nx-request-id: req_test\r\n\r\n");
    });

    it("sends content-length: 0 for a body-less POST, as undici does", async () => {
      await setup();
      const before = up.heads.length;
      await request(fr.port, "/p", { method: "POST" });
      expect(up.heads[before]).toBe("POST /p HTTP/1.1\r\nhost: app.test\r\nx-request-id: req_test\r\ncontent-length: 0\r\n\r\n");
    });

    it("refuses a head a CR, LF or NUL would break: 502 and not one byte sent", async () => {
      await setup();
      const accepted = up.accepted;
      const a = await request(fr.port, "/", { headers: { "x-extra": "a\\rInjected: yes" } });
      expect(a.status).toBe(502);
      expect(JSON.parse(a.body.toString()).error.code).toBe("upstream_unavailable");
      expect(up.accepted).toBe(accepted);
      expect(fr.results[0]?.failure).toBe("upstream_unavailable");
      for (const bad of ["a\r\nb", "a\nb", "a\0b", "a\rb"]) expect(requestHead("GET", "/", ["x", bad])).toBeNull();
      expect(requestHead("GET", "/", ["bad name", "v"])).toBeNull();
      expect(requestHead("GET", "/a b", [])).toBeNull();
      expect(requestHead("GET", "*", [])).toBeNull();
    });
  });

  describe("framing", () => {
    it("204: no Content-Length goes to the client, whatever the upstream said (RFC 9110 §8.6)", async () => {
      await setup();
      up.scripts.push((s) => s.write("HTTP/1.1 204 No Content\r\nContent-Length: 40\r\n\r\n"));
      const client = connect(fr.port, "127.0.0.1");
      let raw = "";
      client.on("data", (d: Buffer) => (raw += d.toString("latin1")));
      client.write("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
      await eventually(() => (raw.match(/HTTP\/1\.1 /g) ?? []).length === 2);
      client.destroy();
      const [first, second] = raw.split(/(?=HTTP\/1\.1 )/);
      expect(first).toMatch(/^HTTP\/1\.1 204 /);
      expect(first?.toLowerCase()).not.toContain("content-length");
      expect(second).toMatch(/^HTTP\/1\.1 200 /);
    });

    it("Content-Length: body, headers lower-cased, hop-by-hop and Connection-named dropped, router headers win", async () => {
      await setup();
      up.scripts.push((s) =>
        s.write(
          "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=30\r\n" +
            "X-Request-Id: upstream-chosen\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\nhello",
        ),
      );
      const a = await request(fr.port);
      expect(a.status).toBe(201);
      expect(a.body.toString()).toBe("hello");
      expect(a.complete).toBe(true);
      expect(a.headers["content-type"]).toBe("text/plain");
      expect(a.headers["content-length"]).toBe("5");
      expect(a.headers["x-secret"]).toBeUndefined();
      expect(a.headers["keep-alive"]).toBeUndefined();
      expect(a.headers["x-request-id"]).toBe("req_test");
      expect(a.headers["set-cookie"]).toEqual(["a=1", "b=2"]);
      expect(a.rawHeaders.filter((h) => h.toLowerCase() === "content-length")).toHaveLength(1);
      expect(fr.results).toEqual([
        { status: 201, failure: null, bytesIn: 0, bytesOut: 5, upstream: up.url, upstreamMs: expect.any(Number) },
      ]);
    });

    it("chunked with extensions and trailers, one byte per TCP write", async () => {
      await setup();
      const bytes =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
        '5;ext=1\r\nhello\r\n6 ; a="b"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n';
      up.scripts.push((s) => {
        let i = 0;
        const next = () => {
          if (i < bytes.length) s.write(bytes[i++] as string, () => setImmediate(next));
        };
        next();
      });
      const a = await request(fr.port);
      expect(a.status).toBe(200);
      expect(a.body.toString()).toBe("hello world");
      expect(a.complete).toBe(true);
      expect(a.headers["x-trailer"]).toBeUndefined();
      // Framed cleanly: the connection is kept.
      const conn = lastConn();
      await request(fr.port);
      expect(lastConn()).toBe(conn);
    });

    it("a body delimited by the close passes whole and the connection is not reused", async () => {
      await setup();
      up.scripts.push((s) => s.end("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"));
      const a = await request(fr.port);
      expect(a.body.toString()).toBe("until the end");
      expect(a.complete).toBe(true);
      const conn = lastConn();
      await request(fr.port);
      expect(lastConn()).not.toBe(conn);
    });

    it("HEAD, 204 and 304 have no body, and the connection is kept", async () => {
      await setup();
      const accepted = up.accepted;
      up.scripts.push((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n"));
      const head = await request(fr.port, "/", { method: "HEAD" });
      expect(head.status).toBe(200);
      expect(head.headers["content-length"]).toBe("42");
      expect(head.body.length).toBe(0);
      up.scripts.push((s) => s.write("HTTP/1.1 204 No Content\r\n\r\n"));
      expect((await request(fr.port)).status).toBe(204);
      up.scripts.push((s) => s.write('HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n'));
      const nm = await request(fr.port);
      expect(nm.status).toBe(304);
      expect(nm.headers.etag).toBe('"x"');
      const last = await request(fr.port);
      expect(last.body.toString()).toMatch(/^ok-/);
      expect(up.accepted).toBe(accepted + 1);
    });

    it("skips 100 and 103 and forwards the final response", async () => {
      await setup();
      up.scripts.push((s) => {
        s.write("HTTP/1.1 100 Continue\r\n\r\n");
        setTimeout(() => s.write(`HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n${ok("final")}`), 10);
      });
      const a = await request(fr.port);
      expect(a.status).toBe(200);
      expect(a.body.toString()).toBe("final");
      expect(a.headers.link).toBeUndefined();
    });

    it("reuses one connection for sequential requests", async () => {
      await setup();
      const accepted = up.accepted;
      for (let i = 0; i < 5; i++) expect((await request(fr.port)).body.toString()).toBe(`ok-${accepted}`);
      expect(up.accepted).toBe(accepted + 1);
      expect(fr.client.connections).toBe(1);
    });

    it("does not reuse a connection after Connection: close", async () => {
      await setup();
      const accepted = up.accepted;
      up.scripts.push((s) => s.write(ok("bye", "Connection: close\r\n")));
      expect((await request(fr.port)).body.toString()).toBe("bye");
      await request(fr.port);
      expect(up.accepted).toBe(accepted + 2);
      await eventually(() => up.closed.has(accepted));
    });

    it("honours a Keep-Alive timeout hint shorter than the threshold: not reused", async () => {
      await setup();
      const accepted = up.accepted;
      up.scripts.push((s) => s.write(ok("short", "Keep-Alive: timeout=1\r\n")));
      await request(fr.port);
      await request(fr.port);
      expect(up.accepted).toBe(accepted + 2);
    });
  });

  describe("refused responses: 502, the connection closed, the next request on a new one", () => {
    const cases: [string, string][] = [
      ["101 Switching Protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"],
      ["two different Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"],
      [
        "Content-Length and Transfer-Encoding",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      ],
      ["Transfer-Encoding gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz"],
      ["obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 2\r\n\r\nok"],
      ["NUL in a header", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok"],
      ["bare LF in the head", "HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: s=evil\r\nContent-Length: 2\r\n\r\nok"],
      ["bare CR in the head", "HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: s=evil\r\nContent-Length: 2\r\n\r\nok"],
      ["an invalid status line", "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok"],
      ["an invalid header name", "HTTP/1.1 200 OK\r\nX(A): b\r\nContent-Length: 2\r\n\r\nok"],
      ["a head over 64 KiB", `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(70_000)}\r\nContent-Length: 2\r\n\r\nok`],
    ];
    for (const [name, bytes] of cases) {
      it(name, async () => {
        await setup();
        const accepted = up.accepted;
        up.scripts.push((s) => s.write(bytes));
        const a = await request(fr.port);
        expect(a.status).toBe(502);
        expect(JSON.parse(a.body.toString()).error.code).toBe("upstream_unavailable");
        expect(a.headers["set-cookie"]).toBeUndefined();
        expect(fr.results[0]).toMatchObject({ status: 502, failure: "upstream_unavailable" });
        await eventually(() => up.closed.has(accepted));
        expect((await request(fr.port)).body.toString()).toBe(`ok-${accepted + 1}`);
      });
    }
  });

  describe("bytes that belong to no request", () => {
    const POISON = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nSet-Cookie: s=evil\r\n\r\nSMUGGLED";

    it("a second response glued after the first: the first passes, the connection is dropped", async () => {
      await setup();
      const accepted = up.accepted;
      up.scripts.push((s) => s.write(`${ok("first")}${POISON}`));
      const a = await request(fr.port);
      expect(a.body.toString()).toBe("first");
      await eventually(() => up.closed.has(accepted));
      const b = await request(fr.port);
      expect(b.body.toString()).toBe(`ok-${accepted + 1}`);
      expect(b.headers["set-cookie"]).toBeUndefined();
    });

    it("a second response in a later packet", async () => {
      await setup();
      const accepted = up.accepted;
      up.scripts.push((s) => {
        s.write(ok("first"));
        setTimeout(() => s.write(POISON), 30);
      });
      expect((await request(fr.port)).body.toString()).toBe("first");
      await eventually(() => up.closed.has(accepted));
      const b = await request(fr.port);
      expect(b.body.toString()).toBe(`ok-${accepted + 1}`);
      expect(b.body.toString()).not.toContain("SMUGGLED");
    });

    it("extra body bytes past Content-Length never reach the next request", async () => {
      await setup({ connections: 1 });
      const accepted = up.accepted;
      up.scripts.push((s) => s.write(`${ok("ab")}SMUGGLED`));
      const answers = await Promise.all([request(fr.port), request(fr.port)]);
      expect(answers.map((a) => a.body.toString()).sort()).toEqual(["ab", `ok-${accepted + 1}`]);
    });
  });

  describe("failures", () => {
    it("upstream closes mid-body: the client's response is cut, not complete", async () => {
      await setup();
      up.scripts.push((s) => {
        s.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
        setTimeout(() => s.destroy(), 30);
      });
      const a = await request(fr.port);
      expect(a.status).toBe(200);
      expect(a.complete).toBe(false);
      expect(a.body.toString()).toBe("partial");
      expect(fr.results[0]).toMatchObject({ status: 200, failure: "upstream_unavailable" });
    });

    it("an invalid chunk mid-body: cut, not complete", async () => {
      await setup();
      up.scripts.push((s) => s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n"));
      const a = await request(fr.port);
      expect(a.status).toBe(200);
      expect(a.complete).toBe(false);
    });

    it("connect refused: the next origin answers", async () => {
      await setup({}, [await deadOrigin(), up.url]);
      const a = await request(fr.port);
      expect(a.status).toBe(200);
      expect(fr.results[0]).toMatchObject({ status: 200, failure: null, upstream: up.url });
    });

    it("connect refused on the only origin: 502", async () => {
      await setup({}, [await deadOrigin()]);
      const a = await request(fr.port);
      expect(a.status).toBe(502);
      expect(fr.results[0]).toMatchObject({ status: 502, failure: "upstream_unavailable" });
    });

    it("an idempotent request whose connection closes before any response byte goes to the next origin", async () => {
      const other = await upstream();
      try {
        await setup({}, [up.url, other.url]);
        up.scripts.push((s) => s.destroy());
        const a = await request(fr.port);
        expect(a.status).toBe(200);
        expect(fr.results[0]?.upstream).toBe(other.url);
      } finally {
        await other.close();
      }
    });

    it("a POST whose connection closes before any response byte is not retried", async () => {
      const other = await upstream();
      try {
        await setup({}, [up.url, other.url]);
        up.scripts.push((s) => s.destroy());
        const a = await request(fr.port, "/", { method: "POST" });
        expect(a.status).toBe(502);
        expect(other.heads).toHaveLength(0);
      } finally {
        await other.close();
      }
    });

    it("the keep-alive race: a reused connection found closed is retried once on a fresh one", async () => {
      await setup();
      const accepted = up.accepted;
      expect((await request(fr.port)).body.toString()).toBe(`ok-${accepted}`);
      // The upstream gives up the idle connection as the next request arrives on it.
      up.scripts.push((s) => s.destroy());
      const a = await request(fr.port);
      expect(a.status).toBe(200);
      expect(a.body.toString()).toBe(`ok-${accepted + 1}`);
      expect(fr.results[1]).toMatchObject({ status: 200, failure: null });
    });

    it("the keep-alive race is retried once only", async () => {
      await setup();
      await request(fr.port);
      up.scripts.push(
        (s) => s.destroy(),
        (s) => s.destroy(),
      );
      expect((await request(fr.port)).status).toBe(502);
    });

    it("no headers within headersTimeout: 504 upstream_timeout, connection closed", async () => {
      await setup({ headersTimeoutMs: 100 });
      const accepted = up.accepted;
      up.scripts.push(() => {});
      const a = await request(fr.port);
      expect(a.status).toBe(504);
      expect(JSON.parse(a.body.toString()).error.code).toBe("upstream_timeout");
      expect(fr.results[0]).toMatchObject({ status: 504, failure: "upstream_timeout" });
      await eventually(() => up.closed.has(accepted));
    });

    it("a body that stalls past bodyTimeout: the client's response is cut", async () => {
      await setup({ bodyTimeoutMs: 100 });
      up.scripts.push((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"));
      const a = await request(fr.port);
      expect(a.status).toBe(200);
      expect(a.complete).toBe(false);
      expect(fr.results[0]).toMatchObject({ failure: "upstream_timeout" });
    });

    it("the client going away destroys the upstream connection", async () => {
      await setup();
      const accepted = up.accepted;
      let sent!: () => void;
      const headersSent = new Promise<void>((r) => (sent = r));
      up.scripts.push((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nsome", () => sent()));
      const client = connect(fr.port, "127.0.0.1");
      client.on("error", () => {});
      client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      await headersSent;
      await new Promise<void>((r) => client.once("data", () => r()));
      client.destroy();
      await eventually(() => up.closed.has(accepted));
      await eventually(() => fr.results.length === 1);
      expect(fr.results[0]?.status).toBe(0);
      expect(fr.client.connections).toBe(0);
    });
  });

  describe("flow", () => {
    it("a large body to a slow client: the upstream is held back, nothing is buffered without bound", async () => {
      await setup({ bodyTimeoutMs: 5_000 });
      const total = 64 * 1024 * 1024;
      const piece = Buffer.alloc(64 * 1024, 7);
      let written = 0;
      let upstreamSocket!: Socket;
      up.scripts.push((s) => {
        upstreamSocket = s;
        s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${total}\r\n\r\n`);
        const pump = () => {
          while (written < total) {
            written += piece.length;
            if (!s.write(piece)) {
              s.once("drain", pump);
              return;
            }
          }
        };
        pump();
      });
      const client = connect(fr.port, "127.0.0.1");
      client.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      // The client reads nothing for a while.
      client.pause();
      await eventually(() => upstreamSocket !== undefined);
      await new Promise((r) => setTimeout(r, 300));
      // Only socket buffers' worth went out (kernel buffers on both hops), not the body.
      const heldBack = written;
      expect(heldBack).toBeLessThan(total / 2);
      expect(upstreamSocket.writableNeedDrain).toBe(true);
      // Now it reads everything: the whole body arrives, byte for byte.
      const hash = createHash("sha256");
      let received = 0;
      let head = true;
      await new Promise<void>((resolve) => {
        client.on("data", (c: Buffer) => {
          if (head) {
            const end = c.indexOf("\r\n\r\n");
            c = c.subarray(end + 4);
            head = false;
          }
          received += c.length;
          hash.update(c);
        });
        client.on("close", () => resolve());
        client.resume();
      });
      expect(received).toBe(total);
      expect(hash.digest("hex")).toBe(createHash("sha256").update(Buffer.alloc(total, 7)).digest("hex"));
    });

    it("a client that takes nothing for a body timeout is cut, and its upstream connection closed", async () => {
      await setup({ connections: 1, bodyTimeoutMs: 200, headersTimeoutMs: 5_000 });
      const big = Buffer.alloc(8 * 1024 * 1024, 97);
      let upstreamClosed = false;
      up.scripts.push((s) => {
        s.on("close", () => (upstreamClosed = true));
        s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${big.length}\r\n\r\n`);
        s.write(big);
      });
      const client = connect(fr.port, "127.0.0.1");
      client.on("error", () => {});
      let clientClosed = false;
      client.on("close", () => (clientClosed = true));
      client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      client.pause();
      await eventually(() => fr.results.length === 1, 5_000);
      expect(fr.results[0]).toMatchObject({ status: 200, failure: "request_timeout" });
      await eventually(() => upstreamClosed, 5_000);
      // Reading again, the client finds its connection closed and the body cut short.
      let received = 0;
      client.on("data", (c: Buffer) => (received += c.length));
      client.resume();
      await eventually(() => clientClosed, 5_000);
      expect(received).toBeLessThan(big.length);
      // The connection it held serves the next request.
      expect((await request(fr.port)).status).toBe(200);
    });

    it("a request waiting for a connection gets 504 after a headers timeout", async () => {
      await setup({ connections: 1, headersTimeoutMs: 200, bodyTimeoutMs: 5_000 });
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      // The only connection answers its head, then holds its body back.
      up.scripts.push((s) => {
        s.write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab");
        void held.then(() => s.write("cd"));
      });
      const first = request(fr.port);
      await eventually(() => up.heads.length > 0 && fr.client.connections === 1);
      const queued = await request(fr.port);
      expect(queued.status).toBe(504);
      release();
      expect((await first).body.toString()).toBe("abcd");
    });

    it("a queued request whose client left hands its connection on to the next in line", async () => {
      // When /one's response ends, /two's client leaves in the same turn, after /one's
      // connection was handed to /two and before /two could take it.
      const client = new H1Client({ connectTimeoutMs: 1_000, headersTimeoutMs: 5_000, bodyTimeoutMs: 5_000, connections: 1 });
      const responses = new Map<string, import("node:http").ServerResponse>();
      const finished: string[] = [];
      const server: HttpServer = createHttpServer((req, res) => {
        const path = req.url as string;
        responses.set(path, res);
        if (path === "/one") {
          const end = res.end.bind(res) as (...args: unknown[]) => unknown;
          res.end = ((...args: unknown[]) => {
            const r = end(...args);
            // /two's client is gone in this same turn: its response says so at once
            // (as a reset detected in the same poll would), before any check-phase work.
            const two = responses.get("/two");
            two?.emit("close");
            two?.socket?.destroy();
            return r;
          }) as typeof res.end;
        }
        client.forward(
          res,
          {
            origins: [up.url],
            start: 0,
            method: "GET",
            path,
            headers: ["host", "app.test"],
            body: null,
            maxBodyBytes: null,
            responseHeaders: {},
          },
          (r, reason) => writeRefusal(r, reason, "req_test"),
          () => finished.push(path),
        );
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const port = (server.address() as AddressInfo).port;
      try {
        let release!: () => void;
        const held = new Promise<void>((r) => (release = r));
        up.scripts.push((s) => void held.then(() => s.write(ok("one"))));
        const one = request(port, "/one");
        await eventually(() => up.heads.length > 0 && responses.has("/one"));
        const two = request(port, "/two");
        await eventually(() => responses.has("/two"));
        const three = request(port, "/three");
        await eventually(() => responses.has("/three"));
        release();
        expect((await one).status).toBe(200);
        await two;
        // Served at once on the connection /two would have taken, not after its idle timeout.
        const answer = await Promise.race([three, new Promise<null>((r) => setTimeout(() => r(null), 2_000))]);
        expect(answer?.status).toBe(200);
      } finally {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
        await client.close();
      }
    });

    it("queues requests beyond `connections` and serves them on the same connections", async () => {
      await setup({ connections: 2 });
      const accepted = up.accepted;
      const answers = await Promise.all(Array.from({ length: 10 }, () => request(fr.port)));
      expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
      expect(up.accepted - accepted).toBeLessThanOrEqual(2);
    });

    it("refuses beyond the bounded queue", async () => {
      await setup({ connections: 1, maxQueue: 1, headersTimeoutMs: 1_000 });
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      up.scripts.push((s) => void held.then(() => s.write(ok("late"))));
      const before = up.heads.length;
      const first = request(fr.port);
      await eventually(() => up.heads.length > before);
      const second = request(fr.port);
      const third = request(fr.port);
      const refused = await third;
      expect(refused.status).toBe(502);
      release();
      expect((await first).body.toString()).toBe("late");
      expect((await second).status).toBe(200);
    });

    it("an idle pool does not keep the process alive", async () => {
      await setup();
      const script = `
        import { createServer } from "node:http";
        import { H1Client } from ${JSON.stringify(new URL("./h1.ts", import.meta.url).pathname)};
        const client = new H1Client({ connectTimeoutMs: 1000, headersTimeoutMs: 1000, bodyTimeoutMs: 1000, connections: 2 });
        const server = createServer((req, res) => client.forward(res, {
          origins: [${JSON.stringify(up.url)}], start: 0, method: "GET", path: "/", headers: ["host", "x"], body: null,
          maxBodyBytes: null, responseHeaders: {},
        }, () => {}, (r) => { console.log("done", r.status, client.connections); server.close(); }));
        server.listen(0, "127.0.0.1", () => fetch("http://127.0.0.1:" + server.address().port + "/").then((r) => r.text()));
      `;
      const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
      expect(out.trim()).toBe("done 200 1");
      expect(code).toBe(0);
    });

    it("close() ends idle connections and takes no new requests", async () => {
      await setup();
      const accepted = up.accepted;
      await request(fr.port);
      expect(fr.client.connections).toBe(1);
      await fr.client.close();
      expect(fr.client.connections).toBe(0);
      await eventually(() => up.closed.has(accepted));
      expect((await request(fr.port)).status).toBe(502);
    });
  });
});
