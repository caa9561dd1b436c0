/**
 * The h1 upstream client with request bodies: framing (declared length or chunked),
 * counting and the tenant's limit while streaming, backpressure, timeouts on either
 * side, and what may be retried once a body was read. Real sockets throughout: a raw
 * client socket, the front of test/helpers/h1-harness.ts, and a node:http or scripted
 * upstream.
 */
import { createHash } from "node:crypto";
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from "node:http";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeRefusal } from "../../router/src/errors.ts";
import { isBlockedRequestHeader } from "../../router/src/proxy/headers.ts";
import { H1Client } from "../../router/src/proxy/h1.ts";
import { bodyLength, requestHead } from "../../router/src/proxy/h1-request.ts";
import { deadOrigin, eventually, h1Suite } from "../helpers/h1-harness.ts";

const h = h1Suite();

interface Seen {
  headers: IncomingMessage["headers"];
  bytes: number;
  sha: string;
  complete: boolean;
}

/** A node:http upstream that reads each body whole and answers with what it saw. */
async function bodyUpstream(): Promise<{ url: string; seen: Seen[]; connections: number; server: HttpServer }> {
  const u = { url: "", seen: [] as Seen[], connections: 0, server: null as unknown as HttpServer };
  u.server = createHttpServer((req, res) => {
    const hash = createHash("sha256");
    let bytes = 0;
    req.on("data", (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    const record = (complete: boolean) => {
      const seen = { headers: req.headers, bytes, sha: hash.digest("hex"), complete };
      u.seen.push(seen);
      return seen;
    };
    req.on("end", () => res.end(JSON.stringify(record(true))));
    req.on("aborted", () => record(false));
  });
  u.server.on("connection", () => u.connections++);
  await new Promise<void>((r) => u.server.listen(0, "127.0.0.1", r));
  u.url = `http://127.0.0.1:${(u.server.address() as AddressInfo).port}`;
  return u;
}

interface Reply {
  status: number;
  head: string;
  body: string;
  socket: Socket;
}

/**
 * Sends a request head and body parts on a raw connection (`gapMs` between parts) and
 * resolves with the first complete response (Content-Length framed), or what arrived
 * when the connection closed.
 */
function exchange(port: number, head: string, parts: (string | Buffer)[] = [], gapMs = 0): Promise<Reply> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let raw = Buffer.alloc(0);
    let done = false;
    const settle = () => {
      if (done) return;
      const text = raw.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      if (end === -1) {
        if (socket.destroyed) resolve({ status: 0, head: "", body: "", socket });
        return;
      }
      const length = /\r\ncontent-length: (\d+)/i.exec(text.slice(0, end));
      const body = text.slice(end + 4);
      if (length !== null && body.length < Number(length[1]) && !socket.destroyed) return;
      done = true;
      resolve({ status: Number(text.slice(9, 12)), head: text.slice(0, end), body, socket });
    };
    socket.on("data", (c: Buffer) => {
      raw = Buffer.concat([raw, c]);
      settle();
    });
    socket.on("close", settle);
    socket.on("error", () => {});
    socket.write(head);
    let i = 0;
    const next = () => {
      if (i >= parts.length || socket.destroyed) return;
      socket.write(parts[i++] as string | Buffer);
      if (gapMs > 0) setTimeout(next, gapMs);
      else next();
    };
    next();
  });
}

const sha = (b: string | Buffer) => createHash("sha256").update(b).digest("hex");
const chunk = (s: string) => `${s.length.toString(16)}\r\n${s}\r\n`;

describe("request bodies", () => {
  let app: Awaited<ReturnType<typeof bodyUpstream>>;
  beforeAll(async () => {
    app = await bodyUpstream();
  });
  afterAll(async () => {
    app.server.closeAllConnections();
    await new Promise<void>((r) => app.server.close(() => r()));
  });

  it("a declared length goes upstream as that content-length, byte for byte, and the connection is reused", async () => {
    const fr = await h.setup({}, [app.url]);
    const body = "x".repeat(100_000);
    const before = app.connections;
    for (let i = 0; i < 2; i++) {
      const reply = await exchange(fr.port, `POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`, [body]);
      expect(reply.status).toBe(200);
      const seen = JSON.parse(reply.body) as Seen;
      expect(seen).toMatchObject({ bytes: body.length, sha: sha(body), complete: true });
      expect(seen.headers["content-length"]).toBe(String(body.length));
      expect(seen.headers["transfer-encoding"]).toBeUndefined();
      reply.socket.destroy();
    }
    expect(app.connections - before).toBe(1);
    expect(fr.results.map((r) => r.bytesIn)).toEqual([body.length, body.length]);
  });

  it("a chunked body (no length) goes upstream chunked, in pieces as they come; the client's trailers do not", async () => {
    const fr = await h.setup({}, [app.url]);
    const pieces = ["first ", "second ", "x".repeat(70_000)];
    const reply = await exchange(
      fr.port,
      "PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
      [...pieces.map(chunk), "0\r\nX-Client-Trailer: t\r\n\r\n"],
      20,
    );
    expect(reply.status).toBe(200);
    const seen = JSON.parse(reply.body) as Seen;
    expect(seen).toMatchObject({ bytes: pieces.join("").length, sha: sha(pieces.join("")), complete: true });
    expect(seen.headers["transfer-encoding"]).toBe("chunked");
    expect(seen.headers["content-length"]).toBeUndefined();
    expect(seen.headers["x-client-trailer"]).toBeUndefined();
    expect(fr.results[0]?.bytesIn).toBe(pieces.join("").length);
  });

  it("a chunked body past the limit: 413, the upstream connection dropped mid-body, the client's closed, no other origin tried", async () => {
    const other = await bodyUpstream();
    try {
      const fr = await h.setup({ maxBodyBytes: 1_000 }, [app.url, other.url]);
      const seenBefore = app.seen.length;
      const reply = await exchange(
        fr.port,
        "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        [chunk("a".repeat(600)), chunk("b".repeat(600)), chunk("c".repeat(600))],
        30,
      );
      expect(reply.status).toBe(413);
      expect(JSON.parse(reply.body).error.code).toBe("body_too_large");
      expect(reply.head.toLowerCase()).toContain("connection: close");
      await eventually(() => reply.socket.destroyed || reply.socket.readableEnded);
      // The upstream saw a body that never completed, and the other origin nothing.
      await eventually(() => app.seen.length === seenBefore + 1);
      expect(app.seen[seenBefore]?.complete).toBe(false);
      expect(other.seen).toHaveLength(0);
      expect(other.connections).toBe(0);
      expect(fr.results[0]).toMatchObject({ status: 413, failure: "body_too_large" });
      expect(fr.results[0]?.bytesIn).toBeGreaterThan(1_000);
    } finally {
      other.server.close();
    }
  });

  it("a connect error before any body byte was read: the next origin gets the whole body", async () => {
    const fr = await h.setup({}, [await deadOrigin(), app.url]);
    const body = "y".repeat(5_000);
    const reply = await exchange(fr.port, `POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`, [body]);
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body)).toMatchObject({ bytes: body.length, sha: sha(body) });
  });

  it("an upstream that fails after reading part of the body: 502, and the body is not sent anywhere else", async () => {
    const other = await bodyUpstream();
    try {
      const fr = await h.setup({}, [h.up.url, other.url]);
      h.up.scripts.push((s) => s.once("data", () => s.destroy()));
      const reply = await exchange(
        fr.port,
        "PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        [chunk("one"), chunk("two"), chunk("three"), "0\r\n\r\n"],
        30,
      );
      expect(reply.status).toBe(502);
      expect(other.connections).toBe(0);
      expect(fr.results[0]?.failure).toBe("upstream_unavailable");
    } finally {
      other.server.close();
    }
  });

  it("an answer before the whole body: forwarded, then the client's connection and the upstream's are closed", async () => {
    const fr = await h.setup({}, [h.up.url]);
    h.up.scripts.push((s) => s.write("HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope"));
    const accepted = h.up.accepted;
    const reply = await exchange(fr.port, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", ["z".repeat(10)]);
    expect(reply.status).toBe(401);
    expect(reply.body).toBe("nope");
    expect(reply.head.toLowerCase()).toContain("connection: close");
    await eventually(() => h.up.closed.has(accepted));
    expect(fr.results[0]).toMatchObject({ status: 401, failure: null });
  });

  it("a large upload to an upstream that reads slowly: the client is held back, nothing is buffered without bound", async () => {
    let held!: IncomingMessage;
    const slow = createHttpServer((req, res) => {
      held = req;
      req.pause();
      const hash = createHash("sha256");
      let bytes = 0;
      req.on("data", (c: Buffer) => {
        bytes += c.length;
        hash.update(c);
      });
      req.on("end", () => res.end(JSON.stringify({ bytes, sha: hash.digest("hex") })));
    });
    await new Promise<void>((r) => slow.listen(0, "127.0.0.1", r));
    try {
      const fr = await h.setup({ bodyTimeoutMs: 10_000 }, [`http://127.0.0.1:${(slow.address() as AddressInfo).port}`]);
      const total = 64 * 1024 * 1024;
      const piece = Buffer.alloc(64 * 1024, 3);
      const socket = connect(fr.port, "127.0.0.1");
      let written = 0;
      const pump = () => {
        while (written < total) {
          written += piece.length;
          if (!socket.write(piece)) {
            socket.once("drain", pump);
            return;
          }
        }
      };
      socket.write(`POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: ${total}\r\nConnection: close\r\n\r\n`);
      pump();
      await eventually(() => held !== undefined);
      await new Promise((r) => setTimeout(r, 300));
      // Only socket buffers' worth left the client (kernel buffers on both hops).
      expect(written).toBeLessThan(total / 2);
      let raw = "";
      socket.on("data", (c: Buffer) => (raw += c.toString("latin1")));
      held.resume();
      await new Promise<void>((r) => socket.on("close", () => r()));
      expect(raw).toMatch(/^HTTP\/1\.1 200 /);
      const whole = createHash("sha256");
      for (let i = 0; i < total / piece.length; i++) whole.update(piece);
      expect(JSON.parse(raw.slice(raw.indexOf("\r\n\r\n") + 4))).toEqual({ bytes: total, sha: whole.digest("hex") });
      expect(fr.results[0]?.bytesIn).toBe(total);
    } finally {
      slow.closeAllConnections();
      slow.close();
    }
  });

  it("a client that stops sending its body: 408 after a body timeout, the upstream connection closed", async () => {
    const fr = await h.setup({ bodyTimeoutMs: 300 }, [h.up.url]);
    const accepted = h.up.accepted;
    h.up.scripts.push(() => {});
    const reply = await exchange(fr.port, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", ["12345"]);
    expect(reply.status).toBe(408);
    expect(JSON.parse(reply.body).error.code).toBe("request_timeout");
    await eventually(() => h.up.closed.has(accepted));
    expect(fr.results[0]?.failure).toBe("request_timeout");
  });

  it("an upstream that stops taking the body: 504 after a body timeout", async () => {
    const fr = await h.setup({ bodyTimeoutMs: 300 }, [h.up.url]);
    // Reads the head, then nothing more.
    h.up.scripts.push((s) => s.pause());
    const big = Buffer.alloc(16 * 1024 * 1024, 1);
    const reply = await exchange(fr.port, `POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\n\r\n`, [big]);
    expect(reply.status).toBe(504);
    expect(fr.results[0]?.failure).toBe("upstream_timeout");
  });

  it("a body on a reused connection the upstream closed is not resent (no duplicate side effects)", async () => {
    const fr = await h.setup({}, [h.up.url]);
    const warm = await exchange(fr.port, "GET /warm HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(warm.status).toBe(200);
    const heads = h.up.heads.length;
    h.up.scripts.push((s) => s.destroy());
    const reply = await exchange(fr.port, "PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", ["hello"]);
    expect(reply.status).toBe(502);
    expect(h.up.heads.length).toBe(heads + 1);
  });
});

describe("request bodies: what a client cannot make the router send", () => {
  it("a thousand one-byte chunks read in one turn go upstream as a few chunks, not a thousand writes", async () => {
    const received: Buffer[] = [];
    const raw = createServer((socket) => {
      socket.on("data", (d: Buffer) => {
        received.push(d);
        if (Buffer.concat(received).includes("\r\n0\r\n\r\n")) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      });
    });
    await new Promise<void>((r) => raw.listen(0, "127.0.0.1", r));
    try {
      const fr = await h.setup({}, [`http://127.0.0.1:${(raw.address() as AddressInfo).port}`]);
      const body = "abcdefghij".repeat(100);
      const wire = [...body].map((c) => `1\r\n${c}\r\n`).join("");
      const reply = await exchange(fr.port, `POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${wire}0\r\n\r\n`);
      expect(reply.status).toBe(200);
      const sent = Buffer.concat(received).toString("latin1");
      const bodyPart = sent.slice(sent.indexOf("\r\n\r\n") + 4);
      // Decode what the upstream received: chunk sizes, then data.
      let decoded = "";
      let chunks = 0;
      for (let at = 0; ; ) {
        const eol = bodyPart.indexOf("\r\n", at);
        const size = Number.parseInt(bodyPart.slice(at, eol), 16);
        if (size === 0) break;
        chunks++;
        decoded += bodyPart.slice(eol + 2, eol + 2 + size);
        at = eol + 2 + size + 2;
      }
      expect(decoded).toBe(body);
      expect(chunks).toBeLessThan(10);
    } finally {
      raw.close();
    }
  });

  it("a body something else already read, or decoded to text, is not forwarded: 502, the upstream connection closed", async () => {
    const client = new H1Client({ connectTimeoutMs: 1_000, headersTimeoutMs: 1_000, bodyTimeoutMs: 1_000, connections: 2 });
    const front = createHttpServer((req, res) => {
      req.setEncoding("utf8");
      client.forward(
        res,
        {
          origins: [h.up.url],
          start: 0,
          method: "POST",
          path: "/",
          headers: ["host", "app.test"],
          body: req,
          maxBodyBytes: null,
          responseHeaders: {},
        },
        (r, reason) => writeRefusal(r, reason, "req_test"),
        () => {},
      );
    });
    await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
    try {
      const accepted = h.up.accepted;
      h.up.scripts.push(() => {});
      const reply = await exchange(
        (front.address() as AddressInfo).port,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
        ["hello"],
      );
      expect(reply.status).toBe(502);
      await eventually(() => h.up.closed.has(accepted));
    } finally {
      front.closeAllConnections();
      front.close();
      await client.close();
    }
  });

  it("framing is the router's: Content-Length in any spelling is never forwarded, a coding other than chunked sends nothing", () => {
    for (const name of ["content-length", "Content-Length", "Content_Length", "CONTENT_length"])
      expect(isBlockedRequestHeader(name)).toBe(true);
    const withCoding = (coding: string) => ({ headers: { "transfer-encoding": coding } }) as unknown as IncomingMessage;
    expect(bodyLength(withCoding("chunked"))).toBe(-1);
    expect(bodyLength(withCoding(" Chunked "))).toBe(-1);
    expect(requestHead("POST", "/", [], bodyLength(withCoding("gzip, chunked")))).toBeNull();
    expect(requestHead("POST", "/", [], bodyLength(withCoding("identity")))).toBeNull();
  });
});
