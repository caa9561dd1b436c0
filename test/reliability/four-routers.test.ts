/**
 * Four router processes (`node router/src/main.ts` each, not ROUTER_WORKERS) sharing
 * one real Redis, as several stateless replicas behind a load balancer run: a change
 * reaches every one of them within a second, a tenant's rate limit is one limit for
 * all four (sparse traffic, admitted ahead of the store's count, passes it by at most
 * one request per router), and their decisions land in one audit trail.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { PREFETCH_GAP_MS } from "@portcullis/router";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RouterProcess, spawnRouter } from "../helpers/router-process.ts";
import { eventually, propagatesWithin, startTestStack, type TestStack } from "../helpers/stack.ts";

async function get(port: number, host: string): Promise<{ status: number; requestId: string }> {
  const res = await request(`http://127.0.0.1:${port}/`, { headers: { host } });
  await res.body.dump();
  return { status: res.statusCode, requestId: String(res.headers["x-request-id"] ?? "") };
}

describe("four router processes sharing one Redis", () => {
  let stack: TestStack;
  let routers: RouterProcess[] = [];

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real", routers: 0, audit: "stream" });
    routers = await Promise.all(Array.from({ length: 4 }, () => spawnRouter(stack)));
  }, 60_000);
  afterAll(async () => {
    await Promise.all(routers.map((r) => r.kill()));
    await stack?.close();
  });

  it("a suspension and its reversal reach all four within 1 s, ten times over", async () => {
    const t = await stack.tenant("everywhere");
    for (const r of routers) expect((await get(r.port, t.host)).status).toBe(200);
    const took: number[] = [];
    for (let i = 0; i < 10; i++) {
      const status = i % 2 === 0 ? "suspended" : "active";
      const expected = i % 2 === 0 ? 403 : 200;
      expect((await stack.admin("PATCH", "/v1/tenants/everywhere", { status })).status).toBe(200);
      took.push(
        await propagatesWithin(async () => {
          const answers = await Promise.all(routers.map((r) => get(r.port, t.host)));
          return answers.every((a) => a.status === expected);
        }, 1_000),
      );
    }
    expect(Math.max(...took)).toBeLessThan(1_000);
  });

  it("a tenant's rate limit is one limit for the four, not one per router", async () => {
    const t = await stack.tenant("shared-limit");
    expect(
      (await stack.admin("PATCH", "/v1/tenants/shared-limit", { limits: { requestsPerSecond: 0.5, burst: 8 } })).status,
    ).toBe(200);
    await stack.cp.publisher.flush();
    const before = stack.upstreamContacts;
    const started = performance.now();
    const answers: number[] = [];
    // Four waves of 8 concurrent requests, two through each router.
    for (let wave = 0; wave < 4; wave++) {
      const statuses = await Promise.all(Array.from({ length: 8 }, (_, i) => get(routers[i % 4]!.port, t.host)));
      answers.push(...statuses.map((s) => s.status));
    }
    const seconds = (performance.now() - started) / 1000;
    const passed = answers.filter((s) => s === 200).length;
    expect(passed + answers.filter((s) => s === 429).length).toBe(answers.length);
    // One bucket: at most the burst plus what refilled meanwhile (0.5/s), never the burst
    // once per router (32).
    expect(passed).toBeLessThanOrEqual(8 + Math.ceil(seconds * 0.5) + 1);
    expect(passed).toBeGreaterThan(0);
    // Refused requests reached no upstream.
    expect(stack.upstreamContacts - before).toBe(passed);
  });

  it("sparse traffic admitted ahead passes a drained bucket by at most one request per router", async () => {
    const t = await stack.tenant("sparse-four");
    // Burst 40: leases of 4, admitted ahead while the store's last answer left 20.
    expect(
      (await stack.admin("PATCH", "/v1/tenants/sparse-four", { limits: { requestsPerSecond: 0.01, burst: 40 } })).status,
    ).toBe(200);
    await stack.cp.publisher.flush();
    const sum = async (series: string) =>
      (await Promise.all(routers.map((r) => r.metric(series)))).reduce<number>((n, v) => n + (v ?? 0), 0);
    const aheadBefore = await sum("portcullis_limiter_admitted_ahead_total");
    const overBefore = await sum("portcullis_limiter_over_admitted_total");
    const before = stack.upstreamContacts;
    const started = performance.now();
    let passed = 0;

    // Each router learns from the store that the bucket is nearly full (39 … 36 left).
    for (const r of routers) {
      expect((await get(r.port, t.host)).status).toBe(200);
      passed++;
    }
    // The fourth drains it, steadily (through leases, never ahead).
    for (let i = 0; i < 60; i++) {
      const { status } = await get(routers[3]!.port, t.host);
      if (status === 429) break;
      expect(status).toBe(200);
      passed++;
    }
    // The other three, sparse now, still believe the bucket is full: each admits one ahead.
    await sleep(PREFETCH_GAP_MS + 100);
    const sparse = await Promise.all(routers.slice(0, 3).map((r) => get(r.port, t.host)));
    expect(sparse.map((a) => a.status)).toEqual([200, 200, 200]);
    passed += 3;
    // Their charges come back refused: over the limit by three, one per router, counted.
    // (Four if the fourth stalled 2.5 s within its drain, and went ahead too: the bound.)
    await eventually(async () => (await sum("portcullis_limiter_over_admitted_total")) - overBefore >= 3, 5_000);
    const ahead = (await sum("portcullis_limiter_admitted_ahead_total")) - aheadBefore;
    expect(ahead).toBeGreaterThanOrEqual(3);
    expect(ahead).toBeLessThanOrEqual(routers.length);
    // Then every router refuses: none admits ahead again on an empty bucket.
    await sleep(PREFETCH_GAP_MS + 100);
    const after = await Promise.all(routers.map((r) => get(r.port, t.host)));
    expect(after.map((a) => a.status)).toEqual([429, 429, 429, 429]);

    const seconds = (performance.now() - started) / 1000;
    const refill = Math.ceil(seconds * 0.01);
    // The bound of docs/limits.md: the burst, what refilled, and one per router.
    expect(passed).toBeLessThanOrEqual(40 + refill + routers.length);
    expect(passed).toBeGreaterThanOrEqual(40 + 3);
    const over = (await sum("portcullis_limiter_over_admitted_total")) - overBefore;
    expect(over).toBeGreaterThanOrEqual(3);
    expect(over).toBeLessThanOrEqual(routers.length);
    expect(stack.upstreamContacts - before).toBe(passed);
  });

  it("the four routers' decisions land in one audit trail, each once", async () => {
    const t = await stack.tenant("audited");
    const ids: string[] = [];
    for (const r of routers) {
      ids.push((await get(r.port, t.host)).requestId, (await get(r.port, "nobody.localhost")).requestId);
    }
    expect(new Set(ids).size).toBe(8);
    const seqs: number[] = [];
    for (const id of ids) {
      const rows = await stack.auditRows(id);
      expect(rows, id).toHaveLength(1);
      seqs.push(rows[0]!.seq);
    }
    // One chain: eight distinct positions in it.
    expect(new Set(seqs).size).toBe(8);
  });
});
