/**
 * A client that stops reading its response must not hold the tenant's upstream
 * connection (and every request queued behind it) for as long as it likes: after
 * the upstream body timeout without taking a byte, its response is cut and the
 * upstream connection closed. Both forwarders: a request without a body (the
 * router's own HTTP/1.1 client) and one with a body (undici).
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, startTestStack, type TestStack } from "../helpers/stack.ts";

const BIG = Buffer.alloc(16 * 1024 * 1024, 97);

describe("a client that stops reading", () => {
  let stack: TestStack;
  let server: Server;
  const upstreamSockets: { socket: Socket; closed: boolean }[] = [];

  beforeAll(async () => {
    stack = await startTestStack({
      router: { upstream: { connectTimeoutMs: 1_000, headersTimeoutMs: 5_000, bodyTimeoutMs: 300, connections: 8 } },
    });
    await stack.tenant("reader");
    // An upstream that answers every request with 16 MiB, as fast as it is taken.
    server = createServer((socket) => {
      const entry = { socket, closed: false };
      upstreamSockets.push(entry);
      socket.on("close", () => (entry.closed = true));
      socket.on("error", () => {});
      socket.once("data", () => {
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${BIG.length}\r\n\r\n`);
        socket.write(BIG);
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    expect((await stack.admin("PUT", "/v1/tenants/reader/upstreams", { urls: [url] })).status).toBe(200);
    await stack.cp.publisher.flush();
  });
  afterAll(async () => {
    for (const { socket } of upstreamSockets) socket.destroy();
    await new Promise<void>((r) => server?.close(() => r()));
    await stack?.close();
  });

  for (const [label, head] of [
    ["without a body", "GET /big HTTP/1.1\r\nHost: reader.localhost\r\n\r\n"],
    ["with a body", "POST /big HTTP/1.1\r\nHost: reader.localhost\r\nContent-Length: 2\r\n\r\nhi"],
  ] as const) {
    it(`is cut after the body timeout, and its upstream connection closed (request ${label})`, async () => {
      const before = upstreamSockets.length;
      const client = connect(stack.port, "127.0.0.1");
      client.on("error", () => {});
      let closed = false;
      client.on("close", () => (closed = true));
      client.write(head);
      client.pause();
      await eventually(() => upstreamSockets.length > before);
      const upstream = upstreamSockets[before] as { closed: boolean };
      await eventually(() => upstream.closed, 10_000);
      // Reading again: the connection is closed and the body was cut short.
      let received = 0;
      client.on("data", (c: Buffer) => (received += c.length));
      client.resume();
      await eventually(() => closed, 10_000);
      expect(received).toBeGreaterThan(0);
      expect(received).toBeLessThan(BIG.length);
    });
  }
});
