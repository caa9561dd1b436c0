/**
 * Per-API-key rate limits end to end: `POST /v1/tenants/:tenant/keys` with `limits`,
 * the key list, and a key limited below its tenant refused with the key's own
 * RateLimit policy while the tenant's other keys still pass. Against real Postgres
 * and Redis (two routers sharing the Redis) and the embedded defaults. Every refusal
 * is checked for status, headers, audit reason and no upstream contact.
 */
import { describe, expect, it, beforeAll, afterAll } from "vitest";
import { KeyEntry } from "@portcullis/shared";
import { startTestStack, type Backend, type TestStack } from "../helpers/stack.ts";

for (const backend of ["real", "embedded"] as Backend[]) {
  describe(`per-key rate limits (${backend})`, () => {
    let stack: TestStack;

    beforeAll(async () => {
      stack = await startTestStack({ backend, routers: 2 });
    });
    afterAll(async () => {
      await stack?.close();
    });

    async function tenant(slug: string, limits: Record<string, unknown>) {
      const t = await stack.tenant(slug);
      const res = await stack.admin("PATCH", `/v1/tenants/${slug}`, { limits });
      expect(res.status, res.text).toBe(200);
      await stack.cp.publisher.flush();
      return t;
    }

    async function createKey(slug: string, body: Record<string, unknown>) {
      const res = await stack.admin("POST", `/v1/tenants/${slug}/keys`, body);
      expect(res.status, res.text).toBe(201);
      return res.json() as { id: string; key: string; limits: unknown };
    }

    const api = (key: string, router = stack.routers[1]) =>
      stack.request("api.localhost", "/", { headers: { authorization: `Bearer ${key}` } }, router);

    it("validates limits like the tenant's and returns them on creation and in the key list", async () => {
      await tenant("kvalid", { requestsPerSecond: 100, burst: 100 });
      const bad = [
        { requestsPerSecond: 0 },
        { requestsPerSecond: -1, burst: 2 },
        { requestsPerSecond: 1, burst: 1.5 },
        { requestsPerSecond: 1, burst: 0 },
        { burst: 3 },
        { requestsPerSecond: "5" },
        { requestsPerSecond: 1, monthlyRequests: 10 },
        null,
      ];
      for (const limits of bad) {
        const res = await stack.admin("POST", "/v1/tenants/kvalid/keys", { limits });
        expect(res.status, JSON.stringify(limits)).toBe(400);
      }
      expect((await stack.admin("GET", "/v1/tenants/kvalid/keys")).json().keys).toEqual([]);

      const limited = await createKey("kvalid", { name: "ci", limits: { requestsPerSecond: 0.5, burst: 3 } });
      expect(limited.limits).toEqual({ requestsPerSecond: 0.5, burst: 3 });
      const noBurst = await createKey("kvalid", { limits: { requestsPerSecond: 2 } });
      expect(noBurst.limits).toEqual({ requestsPerSecond: 2, burst: null });
      const plain = await createKey("kvalid", {});
      expect(plain.limits).toBeNull();

      const listed = (await stack.admin("GET", "/v1/tenants/kvalid/keys")).json().keys as { id: string; limits: unknown }[];
      const byId = new Map(listed.map((k) => [k.id, k.limits]));
      expect(byId.get(limited.id)).toEqual({ requestsPerSecond: 0.5, burst: 3 });
      expect(byId.get(noBurst.id)).toEqual({ requestsPerSecond: 2, burst: null });
      expect(byId.get(plain.id)).toBeNull();
    });

    it("a key limited below its tenant gets 429 with the key's policy; another key of the tenant still passes", async () => {
      const t = await tenant("kbelow", { requestsPerSecond: 100, burst: 100 });
      const slow = await createKey("kbelow", { limits: { requestsPerSecond: 0.2, burst: 2 } });
      const free = await createKey("kbelow", {});

      const first = await api(slow.key);
      expect(first.status).toBe(200);
      expect(first.headers["ratelimit-policy"]).toBe('"key";q=2;w=10');
      expect(first.headers.ratelimit).toMatch(/^"key";r=1;t=\d+$/);
      // The second request goes through the other router: one bucket in the shared store.
      expect((await api(slow.key, stack.routers[0])).status).toBe(200);

      const contacts = stack.upstreamContacts;
      const refused = await api(slow.key);
      expect(refused.status).toBe(429);
      expect(refused.json().error.code).toBe("rate_limited");
      expect(Number(refused.headers["retry-after"])).toBeGreaterThanOrEqual(1);
      expect(Number(refused.headers["retry-after"])).toBeLessThanOrEqual(5);
      expect(refused.headers["ratelimit-policy"]).toBe('"key";q=2;w=10');
      expect(refused.headers.ratelimit).toMatch(/^"key";r=0;t=\d+$/);
      expect((await api(slow.key, stack.routers[0])).status).toBe(429);
      expect(stack.upstreamContacts).toBe(contacts);
      const events = await stack.auditFor(refused.json().error.requestId);
      expect(events[0]?.reason).toBe("rate_limited");
      expect(events[0]?.tenantId).toBe(t.id);

      // The tenant's other key (no limits of its own) and its hostname traffic still pass,
      // under the tenant's policy.
      for (let i = 0; i < 5; i++) {
        const ok = await api(free.key, stack.routers[i % 2]);
        expect(ok.status).toBe(200);
        expect(ok.headers["ratelimit-policy"]).toBe('"tenant";q=100;w=1');
      }
      expect(stack.upstreamContacts).toBe(contacts + 5);
    });

    it("a key allowed more than its tenant is still bound by the tenant's bucket", async () => {
      await tenant("kabove", { requestsPerSecond: 0.2, burst: 2 });
      const generous = await createKey("kabove", { limits: { requestsPerSecond: 100, burst: 100 } });
      expect((await api(generous.key)).status).toBe(200);
      expect((await api(generous.key)).status).toBe(200);
      const contacts = stack.upstreamContacts;
      const refused = await api(generous.key);
      expect(refused.status).toBe(429);
      expect(refused.headers["ratelimit-policy"]).toBe('"tenant";q=2;w=10');
      expect(stack.upstreamContacts).toBe(contacts);
    });
  });
}

describe("cached key records", () => {
  it("records written before keys had limits still parse (the key then uses the tenant's numbers)", () => {
    const old = { v: 3, key: { keyId: "key_old", tenantId: "ten_a", expiresAt: null, binding: null } };
    const parsed = KeyEntry.safeParse(old);
    expect(parsed.success).toBe(true);
    expect(parsed.data?.key?.limits).toBeUndefined();
    const bad = { v: 3, key: { ...old.key, limits: { requestsPerSecond: 0, burst: null } } };
    expect(KeyEntry.safeParse(bad).success).toBe(false);
  });
});
