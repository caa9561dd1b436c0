/**
 * A drain ends with the requests in flight, even while clients keep connections
 * alive: a request that arrives on a kept-alive connection after the drain began is
 * served and its connection closed after the answer (found by `npm run faults`: the
 * drain ran until DRAIN_TIMEOUT_MS, then cut requests mid-flight).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Pool } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestStack, type TestStack } from "../helpers/stack.ts";

describe("drain with kept-alive client connections (real Redis and Postgres)", () => {
  let stack: TestStack;
  let slow: Server;

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real" });
    await stack.tenant("acme");
    slow = createServer((req, res) => setTimeout(() => res.end(`done ${req.url}`), req.url === "/slow" ? 600 : 0));
    await new Promise<void>((r) => slow.listen(0, "127.0.0.1", () => r()));
    const put = await stack.admin("PUT", "/v1/tenants/acme/upstreams", {
      urls: [`http://127.0.0.1:${(slow.address() as AddressInfo).port}`],
    });
    expect(put.status).toBe(200);
  });
  afterAll(async () => {
    slow?.closeAllConnections();
    slow?.close();
    await stack?.close();
  });

  it("finishes the requests in flight, closes kept-alive connections after their answers, and ends without the timeout", async () => {
    const router = await stack.addRouter({ drainTimeoutMs: 25_000 });
    const pool = new Pool(`http://127.0.0.1:${router.port}`, { connections: 2, keepAliveTimeout: 60_000 });
    try {
      const get = (path: string) => pool.request({ method: "GET", path, headers: { host: "acme.localhost" } });
      // Two kept-alive connections.
      const warm = await Promise.all([get("/slow"), get("/slow")]);
      for (const w of warm) {
        expect(w.statusCode).toBe(200);
        await w.body.text();
      }
      // Both connections busy when the drain begins: without being told to close, each
      // would stay open after its answer and take the client's next request.
      const inFlight = [get("/slow"), get("/slow")];
      await new Promise((r) => setTimeout(r, 100));
      let drained = false;
      const drain = router.drain().then(() => (drained = true));
      for (const pending of inFlight) {
        const res = await pending;
        expect(res.statusCode).toBe(200);
        expect(await res.body.text()).toBe("done /slow");
      }
      // The client's next request on a kept connection: answered and that connection
      // closed after it, or (the connection already closed as idle) refused at connect.
      const next = await get("/after").then(
        async (res) => ({ status: res.statusCode, connection: res.headers.connection, body: await res.body.text() }),
        (error: Error & { code?: string }) => ({ status: 0, connection: "", body: error.code ?? error.message }),
      );
      if (next.status === 0) expect(["ECONNREFUSED", "UND_ERR_SOCKET", "ECONNRESET"]).toContain(next.body);
      else expect(next).toEqual({ status: 200, connection: "close", body: "done /after" });
      // Nothing holds the drain open now: it ends long before DRAIN_TIMEOUT_MS.
      const started = Date.now();
      await drain;
      expect(drained).toBe(true);
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      await pool.close();
    }
  });
});
