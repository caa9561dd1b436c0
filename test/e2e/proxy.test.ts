/**
 * Forwarding behaviour against real upstream servers: dead and slow backends,
 * failover on connect errors only, and streaming in both directions.
 */
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { send } from "../helpers/http.ts";
import { startTestStack, type TestStack } from "../helpers/stack.ts";
import { refusedUrl } from "../helpers/ports.ts";

function serve(handler: Parameters<typeof createServer>[1]): Promise<Server & { url: string; hits: number }> {
  const server = createServer((req, res) => {
    (server as Server & { hits: number }).hits++;
    handler?.(req, res);
  }) as Server & { url: string; hits: number };
  server.hits = 0;
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      server.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      resolve(server);
    }),
  );
}

const deadUrl = refusedUrl;

describe("forwarding (real Redis, real Postgres, real upstreams)", () => {
  let stack: TestStack;
  const servers: Server[] = [];

  beforeAll(async () => {
    stack = await startTestStack({
      backend: "real",
      router: { upstream: { connectTimeoutMs: 500, headersTimeoutMs: 400, bodyTimeoutMs: 2_000, connections: 16 } },
    });
  });
  afterAll(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
    await stack?.close();
  });

  it("answers 502 upstream_unavailable when the only upstream refuses connections", async () => {
    await stack.tenant("dead");
    await stack.admin("PUT", "/v1/tenants/dead/upstreams", { urls: [await deadUrl()] });
    await stack.cp.publisher.flush();
    const res = await stack.request("dead.localhost");
    expect(res.status).toBe(502);
    expect(res.json().error.code).toBe("upstream_unavailable");
    expect(res.json().error.requestId).toBe(res.headers["x-request-id"]);
  });

  it("fails over to the next upstream on a connect error", async () => {
    const alive = await serve((_req, res) => res.end("alive"));
    servers.push(alive);
    await stack.tenant("failover");
    await stack.admin("PUT", "/v1/tenants/failover/upstreams", { urls: [await deadUrl(), alive.url] });
    await stack.cp.publisher.flush();
    for (let i = 0; i < 4; i++) {
      const res = await stack.request("failover.localhost");
      expect(res.status).toBe(200);
      expect(res.text).toBe("alive");
    }
  });

  it("does not retry a request whose upstream accepted it and then failed (no duplicate side effects)", async () => {
    const flaky = await serve((req) => req.socket.destroy());
    const second = await serve((_req, res) => res.end("second"));
    servers.push(flaky, second);
    await stack.tenant("noretry");
    await stack.admin("PUT", "/v1/tenants/noretry/upstreams", { urls: [flaky.url, second.url] });
    await stack.cp.publisher.flush();
    // Round robin sends consecutive requests to each upstream in turn.
    const answers = [];
    for (let i = 0; i < 2; i++) {
      answers.push((await stack.request("noretry.localhost", "/", { method: "POST", body: "charge the card once" })).status);
    }
    // Each POST reached exactly one upstream: the one that failed mid-request was not retried.
    expect(flaky.hits).toBe(1);
    expect(second.hits).toBe(1);
    expect(answers.sort()).toEqual([200, 502]);
  });

  it("answers 504 upstream_timeout when the upstream sends no headers in time", async () => {
    const hang = await serve(() => {});
    servers.push(hang);
    await stack.tenant("slowpoke");
    await stack.admin("PUT", "/v1/tenants/slowpoke/upstreams", { urls: [hang.url] });
    await stack.cp.publisher.flush();
    const res = await stack.request("slowpoke.localhost");
    expect(res.status).toBe(504);
    expect(res.json().error.code).toBe("upstream_timeout");
  });

  it("streams large bodies both ways, byte for byte", async () => {
    const echo = await serve((req, res) => {
      const hash = createHash("sha256");
      let n = 0;
      req.on("data", (c: Buffer) => {
        hash.update(c);
        n += c.length;
      });
      req.on("end", () => {
        res.writeHead(200, { "x-upload-sha256": hash.digest("hex"), "x-upload-bytes": String(n) });
        // 4 MiB download, in chunks.
        let left = 64;
        const chunk = Buffer.alloc(64 * 1024, 7);
        const pump = () => {
          while (left > 0) {
            left--;
            if (!res.write(chunk)) return res.once("drain", pump);
          }
          res.end();
        };
        pump();
      });
    });
    servers.push(echo);
    await stack.tenant("streamer", { plan: "enterprise" });
    await stack.admin("PUT", "/v1/tenants/streamer/upstreams", { urls: [echo.url] });
    await stack.cp.publisher.flush();
    const upload = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < upload.length; i++) upload[i] = (i * 31) & 0xff;
    const res = await send(stack.port, "streamer.localhost", "/upload", { method: "PUT", body: upload });
    expect(res.status).toBe(200);
    expect(res.headers["x-upload-bytes"]).toBe(String(upload.length));
    expect(res.headers["x-upload-sha256"]).toBe(createHash("sha256").update(upload).digest("hex"));
    expect(Buffer.byteLength(res.text, "latin1")).toBe(4 * 1024 * 1024);
  });

  it("refuses a declared body over the tenant's limit with 413 before contacting the upstream", async () => {
    const t = await stack.tenant("small");
    await stack.admin("PATCH", "/v1/tenants/small", { limits: { maxBodyBytes: 1024 } });
    await stack.cp.publisher.flush();
    await new Promise((r) => setTimeout(r, 50));
    const before = t.upstream.requests.length;
    const res = await stack.request("small.localhost", "/", { method: "POST", body: Buffer.alloc(4096) });
    expect(res.status).toBe(413);
    expect(res.json().error.code).toBe("body_too_large");
    expect(t.upstream.requests.length).toBe(before);
    const ok = await stack.request("small.localhost", "/", { method: "POST", body: Buffer.alloc(512) });
    expect(ok.status).toBe(200);
  });
});
