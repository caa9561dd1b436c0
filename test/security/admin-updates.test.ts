/**
 * No lost admin updates (real Postgres, real Redis): concurrent read-modify-writes of
 * one tenant run one after the other on the tenant's row lock, so a suspension that
 * answered 200 is never undone by a concurrent limits change, and the record routers
 * read ends at the database's final state; `If-Match` makes an update conditional on
 * the version the client read (`ETag`).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CACHE, TenantEntry } from "@portcullis/shared";
import { Redis } from "ioredis";
import { TEST_REDIS_URL } from "../helpers/env.ts";
import { startTestStack, type TestStack } from "../helpers/stack.ts";

describe("admin updates under concurrency (real Postgres, real Redis)", () => {
  let stack: TestStack;
  let acme: Awaited<ReturnType<TestStack["tenant"]>>;
  const redis = new Redis(TEST_REDIS_URL);

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real" });
    acme = await stack.tenant("acme");
  });
  afterAll(async () => {
    redis.disconnect();
    await stack?.close();
  });

  it("a suspension is never undone by concurrent limits changes, and the published record is the final one", async () => {
    for (let round = 0; round < 5; round++) {
      expect((await stack.admin("PATCH", "/v1/tenants/acme", { status: "active" })).status).toBe(200);
      const patches = Array.from({ length: 12 }, (_, i) =>
        stack.admin("PATCH", "/v1/tenants/acme", { limits: { requestsPerSecond: 100 + round * 20 + i } }),
      );
      patches.splice(6, 0, stack.admin("PATCH", "/v1/tenants/acme", { status: "suspended" }));
      const answers = await Promise.all(patches);
      for (const a of answers) expect(a.status).toBe(200);
      const after = (await stack.admin("GET", "/v1/tenants/acme")).json();
      expect(after.status, `round ${round}`).toBe("suspended");
      // Versions were taken in commit order: the last answer to commit carries the
      // highest version, and that is the tenant's version now.
      const versions = answers.map((a) => a.json().version as number);
      expect(new Set(versions).size).toBe(versions.length);
      expect(Math.max(...versions)).toBe(after.version);
      // Routers read what the database holds.
      await stack.cp.publisher.flush();
      const stored = TenantEntry.parse(JSON.parse((await redis.get(`${stack.prefix}${CACHE.tenant.key(acme.id)}`)) ?? "null"));
      expect(stored.v).toBe(after.version);
      expect(stored.tenant?.status).toBe("suspended");
    }
    const res = await stack.request(acme.host, "/");
    expect(res.status).toBe(403);
  });

  it("If-Match: an update is made only at the version the client read, else 412 with nothing changed", async () => {
    const read = await stack.admin("GET", "/v1/tenants/acme");
    const etag = read.headers.etag as string;
    expect(etag).toBe(`"${read.json().version}"`);
    // Another operator changes the tenant meanwhile.
    const other = await stack.admin("PATCH", "/v1/tenants/acme", { plan: "pro" });
    expect(other.status).toBe(200);
    expect(other.headers.etag).not.toBe(etag);
    const stale = await stack.adminWith("PATCH", "/v1/tenants/acme", { status: "active" }, { "if-match": etag });
    expect(stale.status).toBe(412);
    expect(stale.json().error.code).toBe("precondition_failed");
    expect((await stack.admin("GET", "/v1/tenants/acme")).json().status).toBe("suspended");
    for (const bad of [`W/${other.headers.etag}`, "garbage", '"not-a-number"']) {
      expect((await stack.adminWith("PATCH", "/v1/tenants/acme", { status: "active" }, { "if-match": bad })).status).toBe(412);
    }
    const fresh = await stack.adminWith(
      "PATCH",
      "/v1/tenants/acme",
      { status: "active" },
      { "if-match": `"1", ${other.headers.etag as string}` },
    );
    expect(fresh.status).toBe(200);
    expect(fresh.json().status).toBe("active");
    const any = await stack.adminWith("PATCH", "/v1/tenants/acme", { plan: "free" }, { "if-match": "*" });
    expect(any.status).toBe(200);
    expect((await stack.adminWith("PATCH", "/v1/tenants/nobody", { plan: "free" }, { "if-match": "*" })).status).toBe(404);
  });
});
