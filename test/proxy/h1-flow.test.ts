/** The h1 upstream client: backpressure, stalled clients, the connection queue and shutdown. Real sockets throughout (test/helpers/h1-harness.ts). */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { writeRefusal } from "../../router/src/errors.ts";
import { H1Client } from "../../router/src/proxy/h1.ts";
import { eventually, h1Suite, ok, request } from "../helpers/h1-harness.ts";

const h = h1Suite();

describe("flow", () => {
  it("a large body to a slow client: the upstream is held back, nothing is buffered without bound", async () => {
    await h.setup({ bodyTimeoutMs: 5_000 });
    const total = 64 * 1024 * 1024;
    const piece = Buffer.alloc(64 * 1024, 7);
    let written = 0;
    let upstreamSocket!: Socket;
    h.up.scripts.push((s) => {
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
    const client = connect(h.fr.port, "127.0.0.1");
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
    await h.setup({ connections: 1, bodyTimeoutMs: 200, headersTimeoutMs: 5_000 });
    const big = Buffer.alloc(8 * 1024 * 1024, 97);
    let upstreamClosed = false;
    h.up.scripts.push((s) => {
      s.on("close", () => (upstreamClosed = true));
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${big.length}\r\n\r\n`);
      s.write(big);
    });
    const client = connect(h.fr.port, "127.0.0.1");
    client.on("error", () => {});
    let clientClosed = false;
    client.on("close", () => (clientClosed = true));
    client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    client.pause();
    await eventually(() => h.fr.results.length === 1, 5_000);
    expect(h.fr.results[0]).toMatchObject({ status: 200, failure: "request_timeout" });
    await eventually(() => upstreamClosed, 5_000);
    // Reading again, the client finds its connection closed and the body cut short.
    let received = 0;
    client.on("data", (c: Buffer) => (received += c.length));
    client.resume();
    await eventually(() => clientClosed, 5_000);
    expect(received).toBeLessThan(big.length);
    // The connection it held serves the next request.
    expect((await request(h.fr.port)).status).toBe(200);
  });

  it("a request waiting for a connection gets 504 after a headers timeout", async () => {
    await h.setup({ connections: 1, headersTimeoutMs: 200, bodyTimeoutMs: 5_000 });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    // The only connection answers its head, then holds its body back.
    h.up.scripts.push((s) => {
      s.write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab");
      void held.then(() => s.write("cd"));
    });
    const first = request(h.fr.port);
    await eventually(() => h.up.heads.length > 0 && h.fr.client.connections === 1);
    const queued = await request(h.fr.port);
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
          origins: [h.up.url],
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
      h.up.scripts.push((s) => void held.then(() => s.write(ok("one"))));
      const one = request(port, "/one");
      await eventually(() => h.up.heads.length > 0 && responses.has("/one"));
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
    await h.setup({ connections: 2 });
    const accepted = h.up.accepted;
    const answers = await Promise.all(Array.from({ length: 10 }, () => request(h.fr.port)));
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
    expect(h.up.accepted - accepted).toBeLessThanOrEqual(2);
  });

  it("refuses beyond the bounded queue", async () => {
    await h.setup({ connections: 1, maxQueue: 1, headersTimeoutMs: 1_000 });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    h.up.scripts.push((s) => void held.then(() => s.write(ok("late"))));
    const before = h.up.heads.length;
    const first = request(h.fr.port);
    await eventually(() => h.up.heads.length > before);
    const second = request(h.fr.port);
    const third = request(h.fr.port);
    const refused = await third;
    expect(refused.status).toBe(502);
    release();
    expect((await first).body.toString()).toBe("late");
    expect((await second).status).toBe(200);
  });

  it("an idle pool does not keep the process alive", async () => {
    await h.setup();
    const script = `
      import { createServer } from "node:http";
      import { H1Client } from ${JSON.stringify(new URL("../../router/src/proxy/h1.ts", import.meta.url).pathname)};
      const client = new H1Client({ connectTimeoutMs: 1000, headersTimeoutMs: 1000, bodyTimeoutMs: 1000, connections: 2 });
      const server = createServer((req, res) => client.forward(res, {
        origins: [${JSON.stringify(h.up.url)}], start: 0, method: "GET", path: "/", headers: ["host", "x"], body: null,
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
    await h.setup();
    const accepted = h.up.accepted;
    await request(h.fr.port);
    expect(h.fr.client.connections).toBe(1);
    await h.fr.client.close();
    expect(h.fr.client.connections).toBe(0);
    await eventually(() => h.up.closed.has(accepted));
    expect((await request(h.fr.port)).status).toBe(502);
  });
});
