/**
 * The tenant list is paged (a platform may hold a million tenants): in slug order, at
 * most `limit` a page, `next` naming where the following page starts; every bad
 * parameter is a 400 with the reason. The CLI follows the pages.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestStack, type TestStack } from "../helpers/stack.ts";

describe("GET /v1/tenants, paged (real Postgres)", () => {
  let stack: TestStack;
  const slugs = ["delta", "alpha", "echo", "charlie", "bravo"];

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real", routers: 0 });
    for (const slug of slugs) await stack.tenant(slug);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("walks every tenant once, in slug order, page by page", async () => {
    const seen: string[] = [];
    let after: string | undefined;
    let pages = 0;
    for (;;) {
      const res = await stack.admin("GET", `/v1/tenants?limit=2${after ? `&after=${after}` : ""}`);
      expect(res.status).toBe(200);
      const body = res.json();
      expect(body.tenants.length).toBeLessThanOrEqual(2);
      seen.push(...body.tenants.map((t: { slug: string }) => t.slug));
      pages++;
      if (body.next === undefined) break;
      after = body.next;
    }
    expect(seen).toEqual([...slugs].sort());
    expect(pages).toBe(3);
    // Each tenant's view is whole: its platform hostname and its upstream.
    const one = (await stack.admin("GET", "/v1/tenants?limit=1")).json().tenants[0];
    expect(one.hostnames.length).toBeGreaterThan(0);
    expect(one.upstreams.length).toBeGreaterThan(0);
  });

  it("answers one page of at most 1000 without parameters, and nothing after the last slug", async () => {
    const all = (await stack.admin("GET", "/v1/tenants")).json();
    expect(all.tenants.map((t: { slug: string }) => t.slug)).toEqual([...slugs].sort());
    expect(all.next).toBeUndefined();
    expect((await stack.admin("GET", "/v1/tenants?after=zzz")).json()).toEqual({ tenants: [] });
  });

  it("refuses a bad limit or cursor with 400 validation_failed", async () => {
    for (const q of ["limit=0", "limit=1001", "limit=two", "limit=1.5", "after="]) {
      const res = await stack.admin("GET", `/v1/tenants?${q}`);
      expect(res.status, q).toBe(400);
      expect(res.json().error.code, q).toBe("validation_failed");
    }
  });
});
