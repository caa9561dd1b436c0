/**
 * The key service as its own process (`npm run start:key-service`): started with
 * KEY_SERVICE_PORT on the stack's real Postgres and Redis, a router verifies keys
 * through it; stopped, the router refuses what it has not cached (503), never allows.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CACHE, hashApiKey } from "@portcullis/shared";
import { TEST_REDIS_URL } from "../helpers/env.ts";
import { startTestStack, type TestStack } from "../helpers/stack.ts";

const MAIN = fileURLToPath(new URL("../../control-plane/src/key-service/main.ts", import.meta.url));
const API = "api.localhost";

function start(env: Record<string, string>): { child: ChildProcess; port: Promise<number>; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const port = new Promise<number>((resolve, reject) => {
    child.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      const m = /key service on :(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`key service exited (${code}): ${out}`)));
  });
  port.catch(() => {});
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, port, exit };
}

describe("the key service process (real Redis, real Postgres)", () => {
  let stack: TestStack;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    stack = await startTestStack();
    await stack.tenant("acme");
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    await stack?.close();
  });

  it("refuses to start without KEY_SERVICE_TOKEN", async () => {
    const { child, exit } = start({ DATABASE_URL: stack.databaseUrl as string, KEY_SERVICE_PORT: "0", LOG_LEVEL: "silent" });
    children.push(child);
    expect(await exit).toBe(2);
  });

  it("verifies keys for a router from its own process, and a router refuses uncached keys once it is gone", async () => {
    const ks = start({
      ...stack.env,
      DATABASE_URL: stack.databaseUrl as string,
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: stack.prefix,
      KEY_SERVICE_PORT: "0",
      KEY_SERVICE_HOST: "127.0.0.1",
    });
    children.push(ks.child);
    const port = await ks.port;
    const router = await stack.addRouter({ keyServiceTimeoutMs: 500 }, { keyServiceUrl: `http://127.0.0.1:${port}` });
    const created = await stack.admin("POST", "/v1/tenants/acme/keys", {});
    await stack.cp.publisher.flush();
    const { key } = created.json() as { key: string };
    const other = (await stack.admin("POST", "/v1/tenants/acme/keys", {})).json().key as string;
    await stack.cp.publisher.flush();
    // Out of Redis: only the key service process can answer.
    await stack.store.del(CACHE.apiKey.key(hashApiKey(key)), CACHE.apiKey.key(hashApiKey(other)));
    const ok = await stack.request(API, "/", { headers: { "x-api-key": key } }, router);
    expect(ok.status).toBe(200);
    expect(ok.json().app).toBe("acme-app");

    ks.child.kill("SIGTERM");
    expect(await ks.exit).toBe(0);
    const contacts = stack.upstreamContacts;
    const down = await stack.request(API, "/", { headers: { "x-api-key": other } }, router);
    expect(down.status).toBe(503);
    expect(down.json().error.code).toBe("resolution_unavailable");
    expect(stack.upstreamContacts).toBe(contacts);
  });
});
