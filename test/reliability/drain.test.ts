/**
 * SIGTERM drains a router process: the ops port turns unready at once, a request in
 * flight completes, new connections are no longer accepted, then the process exits 0.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_REDIS_URL } from "../helpers/env.ts";
import { send } from "../helpers/http.ts";
import { eventually, SECRETS, startTestStack, type TestStack } from "../helpers/stack.ts";

const ROUTER_MAIN = fileURLToPath(new URL("../../router/src/main.ts", import.meta.url));

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe("SIGTERM drains the router (real process, real Redis and Postgres)", () => {
  let stack: TestStack;
  let slow: Server;
  let child: ChildProcess | null = null;

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real" });
    await stack.tenant("acme");
    slow = createServer((_req, res) => {
      setTimeout(() => res.end("slow but complete"), 800);
    });
    await new Promise<void>((r) => slow.listen(0, "127.0.0.1", () => r()));
    const put = await stack.admin("PUT", "/v1/tenants/acme/upstreams", {
      urls: [`http://127.0.0.1:${(slow.address() as AddressInfo).port}`],
    });
    expect(put.status).toBe(200);
  });
  afterAll(async () => {
    child?.kill("SIGKILL");
    slow?.closeAllConnections();
    slow?.close();
    await stack?.close();
  });

  it("finishes the in-flight request, turns unready, refuses new connections, exits 0", async () => {
    const port = await freePort();
    const opsPort = await freePort();
    child = spawn(process.execPath, [ROUTER_MAIN], {
      env: {
        ...process.env,
        ...SECRETS,
        ROUTER_PORT: String(port),
        ROUTER_OPS_PORT: String(opsPort),
        ROUTER_HOST: "127.0.0.1",
        KEY_SERVICE_URL: `http://127.0.0.1:${stack.keyServicePort}`,
        REDIS_URL: TEST_REDIS_URL,
        REDIS_PREFIX: stack.prefix,
        LOG_LEVEL: "silent",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => child?.once("exit", (code) => resolve(code)));
    await eventually(
      async () => {
        try {
          return (await send(opsPort, "127.0.0.1", "/readyz")).status === 200;
        } catch {
          return false;
        }
      },
      10_000,
      50,
    );

    const inFlight = send(port, "acme.localhost", "/slow");
    await new Promise((r) => setTimeout(r, 200));
    child.kill("SIGTERM");
    await eventually(
      async () => {
        try {
          return (await send(opsPort, "127.0.0.1", "/readyz")).status === 503;
        } catch {
          return false;
        }
      },
      2_000,
      20,
    );

    const answer = await inFlight;
    expect(answer.status).toBe(200);
    expect(answer.text).toBe("slow but complete");
    await expect(send(port, "acme.localhost", "/after")).rejects.toThrow();
    expect(await exited).toBe(0);
  });
});
