/**
 * A key's own rate limit holds across router OS processes (`node router/src/main.ts`)
 * sharing only one real Redis: the key's bucket is counted once for the platform, not
 * once per process, while the tenant's other key is unaffected.
 */
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RouterProcess, spawnRouter } from "../helpers/router-process.ts";
import { startTestStack, type TestStack } from "../helpers/stack.ts";

const API = "api.localhost";

async function get(port: number, key: string): Promise<{ status: number; policy: string | undefined }> {
  const res = await request(`http://127.0.0.1:${port}/`, { headers: { host: API, authorization: `Bearer ${key}` } });
  await res.body.dump();
  const policy = res.headers["ratelimit-policy"];
  return { status: res.statusCode, policy: typeof policy === "string" ? policy : undefined };
}

describe("per-key limits across router processes sharing one Redis", () => {
  let stack: TestStack;
  let a: RouterProcess;
  let b: RouterProcess;

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real", routers: 0 });
    [a, b] = await Promise.all([spawnRouter(stack), spawnRouter(stack)]);
  });
  afterAll(async () => {
    await Promise.all([a?.kill(), b?.kill()]);
    await stack?.close();
  });

  it("a key's limit holds across both processes; the tenant's other key still passes", async () => {
    await stack.tenant("kshared");
    const patched = await stack.admin("PATCH", "/v1/tenants/kshared", { limits: { requestsPerSecond: 1000, burst: 1000 } });
    expect(patched.status, patched.text).toBe(200);
    const slow = (await stack.admin("POST", "/v1/tenants/kshared/keys", { limits: { requestsPerSecond: 0.5, burst: 6 } })).json();
    const free = (await stack.admin("POST", "/v1/tenants/kshared/keys", {})).json();
    await stack.cp.publisher.flush();

    const before = stack.upstreamContacts;
    const started = performance.now();
    // Three waves of 8 concurrent requests, half through each process.
    const answers: { status: number; policy: string | undefined }[] = [];
    for (let wave = 0; wave < 3; wave++) {
      answers.push(...(await Promise.all(Array.from({ length: 8 }, (_, i) => get(i % 2 ? a.port : b.port, slow.key)))));
    }
    const seconds = (performance.now() - started) / 1000;
    const passed = answers.filter((r) => r.status === 200).length;
    const refused = answers.filter((r) => r.status === 429);
    expect(passed + refused.length).toBe(answers.length);
    // One bucket for both processes: the burst plus what refilled meanwhile (0.5/s),
    // never the burst once per process (12).
    expect(passed).toBeGreaterThanOrEqual(6);
    expect(passed).toBeLessThanOrEqual(6 + Math.ceil(seconds * 0.5) + 1);
    expect(passed).toBeLessThan(12);
    for (const r of refused) expect(r.policy).toBe('"key";q=6;w=12');
    // Refused requests reached no upstream.
    expect(stack.upstreamContacts - before).toBe(passed);

    const other = await Promise.all(Array.from({ length: 8 }, (_, i) => get(i % 2 ? a.port : b.port, free.key)));
    expect(other.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(stack.upstreamContacts - before).toBe(passed + 8);
  });
});
