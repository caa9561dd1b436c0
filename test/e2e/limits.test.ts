/**
 * Per-tenant limits, quotas, feature flags, branding and plans end to end, over real
 * sockets: against real Postgres and Redis, and the same suite against the embedded
 * defaults (PGlite, in-process store). Every refusal is checked for its status, its
 * headers, its audit reason, and that no upstream was contacted.
 */
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { contextKeysFrom, verifyTenantContext } from "@portcullis/shared";
import { eventually, SECRETS, startTestStack, type Backend, type TestStack } from "../helpers/stack.ts";

type Tenant = Awaited<ReturnType<TestStack["tenant"]>>;

for (const backend of ["real", "embedded"] as Backend[]) {
  describe(`limits, quotas, features, branding (${backend})`, () => {
    let stack: TestStack;

    beforeAll(async () => {
      stack = await startTestStack({ backend, routers: 2 });
    });
    afterAll(async () => {
      await stack?.close();
    });

    /** A routable tenant with the given PATCH applied before any router has seen it. */
    async function tenant(slug: string, patch: Record<string, unknown> = {}, plan?: string): Promise<Tenant> {
      const t = await stack.tenant(slug, plan ? { plan } : {});
      if (Object.keys(patch).length > 0) {
        const res = await stack.admin("PATCH", `/v1/tenants/${slug}`, patch);
        expect(res.status, res.text).toBe(200);
        await stack.cp.publisher.flush();
      }
      return t;
    }

    /** The last router added records the audit trail the stack exposes. */
    const last = () => stack.routers[stack.routers.length - 1]!;

    it("rate-limits a tenant: the burst passes, then 429 with Retry-After and RateLimit headers, no upstream contact", async () => {
      const t = await tenant("ratey", { limits: { requestsPerSecond: 0.2, burst: 4 } });
      const allowed = [];
      for (let i = 0; i < 4; i++) allowed.push(await stack.request(t.host, "/", {}, last()));
      expect(allowed.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      expect(allowed[0]?.headers["ratelimit-policy"]).toBe('"tenant";q=4;w=20');
      expect(allowed[0]?.headers.ratelimit).toMatch(/^"tenant";r=3;t=\d+$/);
      expect(allowed[3]?.headers.ratelimit).toMatch(/^"tenant";r=0;t=\d+$/);
      const contacts = stack.upstreamContacts;
      const refused = await stack.request(t.host, "/", {}, last());
      expect(refused.status).toBe(429);
      expect(refused.json().error.code).toBe("rate_limited");
      expect(Number(refused.headers["retry-after"])).toBeGreaterThanOrEqual(1);
      expect(Number(refused.headers["retry-after"])).toBeLessThanOrEqual(5);
      expect(refused.headers["ratelimit-policy"]).toBe('"tenant";q=4;w=20');
      expect(refused.headers.ratelimit).toMatch(/^"tenant";r=0;t=\d+$/);
      // The other router shares the bucket (one store).
      const other = await stack.request(t.host, "/", {}, stack.routers[0]);
      expect(other.status).toBe(429);
      expect(stack.upstreamContacts).toBe(contacts);
      const events = await stack.auditFor(refused.json().error.requestId);
      expect(events[0]?.reason).toBe("rate_limited");
      expect(events[0]?.tenantId).toBe(t.id);
    });

    it("one tenant's rate covers all its API keys and hostname traffic together", async () => {
      const t = await tenant("keyed", { limits: { requestsPerSecond: 0.2, burst: 3 } });
      const k1 = (await stack.admin("POST", "/v1/tenants/keyed/keys", {})).json().key as string;
      const k2 = (await stack.admin("POST", "/v1/tenants/keyed/keys", {})).json().key as string;
      const api = (key: string) => stack.request("api.localhost", "/", { headers: { authorization: `Bearer ${key}` } }, last());
      expect((await api(k1)).status).toBe(200);
      expect((await api(k2)).status).toBe(200);
      expect((await stack.request(t.host, "/", {}, last())).status).toBe(200);
      const contacts = stack.upstreamContacts;
      const refused = await api(k2);
      expect(refused.status).toBe(429);
      expect(refused.headers["retry-after"]).toBeDefined();
      expect((await api(k1)).status).toBe(429);
      expect(stack.upstreamContacts).toBe(contacts);
    });

    it("refuses with 429 quota_exceeded once the monthly quota is used, until the month ends", async () => {
      const t = await tenant("quota", { limits: { requestsPerSecond: null, monthlyRequests: 3 } });
      for (let i = 0; i < 3; i++) expect((await stack.request(t.host, "/", {}, stack.routers[i % 2])).status).toBe(200);
      const contacts = stack.upstreamContacts;
      for (const router of stack.routers) {
        const res = await stack.request(t.host, "/", {}, router);
        expect(res.status).toBe(429);
        expect(res.json().error.code).toBe("quota_exceeded");
        const retry = Number(res.headers["retry-after"]);
        expect(retry).toBeGreaterThan(0);
        expect(retry).toBeLessThanOrEqual(31 * 24 * 3600);
        expect(res.headers.ratelimit).toBe(`"monthly";r=0;t=${retry}`);
      }
      expect(stack.upstreamContacts).toBe(contacts);
      const res = await stack.request(t.host, "/", {}, last());
      expect((await stack.auditFor(res.json().error.requestId))[0]?.reason).toBe("quota_exceeded");
      // Raising the quota lets the tenant through again within 1 s.
      await stack.admin("PATCH", "/v1/tenants/quota", { limits: { monthlyRequests: 10 } });
      await eventually(async () => (await stack.request(t.host, "/", {}, last())).status === 200, 1_000);
    });

    it("limits the requests a tenant has in flight on a router (429 concurrency_limited), and frees the slot after", async () => {
      const held: ServerResponse[] = [];
      const slow: Server = createServer((_req, res) => {
        held.push(res);
      });
      await new Promise<void>((r) => slow.listen(0, "127.0.0.1", r));
      try {
        const t = await tenant("busy", { limits: { concurrency: 1 } });
        const put = await stack.admin("PUT", "/v1/tenants/busy/upstreams", {
          urls: [`http://127.0.0.1:${(slow.address() as AddressInfo).port}`],
        });
        expect(put.status).toBe(200);
        await stack.cp.publisher.flush();
        const first = stack.request(t.host, "/", {}, last());
        await eventually(() => held.length === 1, 2_000);
        const second = await stack.request(t.host, "/", {}, last());
        expect(second.status).toBe(429);
        expect(second.json().error.code).toBe("concurrency_limited");
        expect(second.headers["retry-after"]).toBe("1");
        expect(held.length).toBe(1);
        expect((await stack.auditFor(second.json().error.requestId))[0]?.reason).toBe("concurrency_limited");
        held[0]?.end("done");
        expect((await first).status).toBe(200);
        await eventually(() => last().limiter.inFlight(t.id) === 0, 1_000);
        const third = stack.request(t.host, "/", {}, last());
        await eventually(() => held.length === 2, 2_000);
        held[1]?.end("done");
        expect((await third).status).toBe(200);
      } finally {
        for (const res of held) if (!res.writableEnded) res.end();
        slow.closeAllConnections();
        await new Promise<void>((r) => slow.close(() => r()));
      }
    });

    it("forwards feature flags in the signed context, and a change reaches the upstream within 1 s", async () => {
      const t = await tenant("flags");
      const features = async () => {
        const res = await stack.request(t.host, "/", {}, stack.routers[0]);
        const seen = t.upstream.requests.at(-1)!;
        const verified = verifyTenantContext(seen, contextKeysFrom(SECRETS.CONTEXT_SIGNING_SECRET));
        expect(verified.ok).toBe(true);
        expect(res.status).toBe(200);
        return verified.ok ? (verified.context["x-tenant-features"] ?? "") : "";
      };
      expect((await features()).split(",")).toEqual(["apiAccess"]);
      // A client cannot add a flag of its own.
      await stack.request(t.host, "/", { headers: { "x-tenant-features": "apiAccess,admin" } });
      expect(t.upstream.requests.at(-1)?.headers["x-tenant-features"]).toBe("apiAccess");
      expect((await stack.admin("PATCH", "/v1/tenants/flags", { features: { betaReports: true } })).status).toBe(200);
      const elapsed = await eventually(async () => (await features()) === "apiAccess,betaReports", 1_000);
      expect(elapsed).toBeLessThan(1_000);
      expect((await stack.admin("PATCH", "/v1/tenants/flags", { features: { betaReports: false } })).status).toBe(200);
      await eventually(async () => (await features()) === "apiAccess", 1_000);
    });

    it("refuses API keys within 1 s when apiAccess is turned off", async () => {
      await tenant("noapi");
      const key = (await stack.admin("POST", "/v1/tenants/noapi/keys", {})).json().key as string;
      const api = () => stack.request("api.localhost", "/", { headers: { authorization: `Bearer ${key}` } }, last());
      expect((await api()).status).toBe(200);
      await stack.admin("PATCH", "/v1/tenants/noapi", { features: { apiAccess: false } });
      await eventually(async () => (await api()).status === 403, 1_000);
      const contacts = stack.upstreamContacts;
      const res = await api();
      expect(res.json().error.code).toBe("api_access_disabled");
      expect(stack.upstreamContacts).toBe(contacts);
    });

    it("applies a plan change and per-tenant overrides on every router within 1 s", async () => {
      const t = await tenant("planned");
      const policies = async () =>
        Promise.all(stack.routers.map(async (r) => (await stack.request(t.host, "/", {}, r)).headers["ratelimit-policy"]));
      expect(await policies()).toEqual(['"tenant";q=40;w=2', '"tenant";q=40;w=2']);
      expect((await stack.admin("PATCH", "/v1/tenants/planned", { plan: "pro" })).status).toBe(200);
      await eventually(async () => (await policies()).every((p) => p === '"tenant";q=400;w=2'), 1_000);
      // An override of the body limit: 413 before any upstream contact, on both routers.
      expect((await stack.admin("PATCH", "/v1/tenants/planned", { limits: { maxBodyBytes: 10 } })).status).toBe(200);
      const body = "x".repeat(100);
      await eventually(async () => {
        const codes = await Promise.all(
          stack.routers.map(async (r) => (await stack.request(t.host, "/", { method: "POST", body }, r)).status),
        );
        return codes.every((c) => c === 413);
      }, 1_000);
      const contacts = t.upstream.requests.length;
      for (const r of stack.routers) expect((await stack.request(t.host, "/", { method: "POST", body }, r)).status).toBe(413);
      expect(t.upstream.requests.length).toBe(contacts);
      // Back to the plan's default when the override is cleared.
      expect((await stack.admin("PATCH", "/v1/tenants/planned", { limits: { maxBodyBytes: null } })).status).toBe(200);
      const view = await stack.admin("GET", "/v1/tenants/planned");
      expect(view.json().limits.maxBodyBytes).toBeNull();
    });

    it("serves the tenant's branding at the well-known path, answered by the router", async () => {
      const t = await tenant("branded", {
        settings: {
          branding: { displayName: "Brand & Co", logoUrl: "https://cdn.example.com/logo.png", primaryColor: "#ff8800" },
        },
      });
      const contacts = stack.upstreamContacts;
      const res = await stack.request(t.host, "/.well-known/portcullis/branding.json");
      expect(res.status).toBe(200);
      expect(res.headers["content-type"]).toBe("application/json");
      expect(res.json()).toEqual({
        displayName: "Brand & Co",
        logoUrl: "https://cdn.example.com/logo.png",
        primaryColor: "#ff8800",
      });
      expect(stack.upstreamContacts).toBe(contacts);
      // A change shows within 1 s.
      await stack.admin("PATCH", "/v1/tenants/branded", { settings: { branding: { primaryColor: "#112233" } } });
      await eventually(
        async () => (await stack.request(t.host, "/.well-known/portcullis/branding.json")).json().primaryColor === "#112233",
        1_000,
      );
      // Not on the API hostname: there the path is the tenant app's.
      const key = (await stack.admin("POST", "/v1/tenants/branded/keys", {})).json().key as string;
      const api = await stack.request("api.localhost", "/.well-known/portcullis/branding.json", {
        headers: { authorization: `Bearer ${key}` },
      });
      expect(api.json().app).toBe("branded-app");
    });

    it("answers a browser with the tenant's branded, escaped HTML page for 429 and suspension; JSON otherwise", async () => {
      const evil = `<script>alert("x")</script>'&`;
      const t = await tenant("htmlpage", {
        limits: { requestsPerSecond: 0.2, burst: 1 },
        settings: {
          branding: {
            displayName: evil,
            logoUrl: 'https://cdn.example.com/a.png?"><script>alert(1)</script>',
            primaryColor: "#abcdef",
          },
        },
      });
      const html = { accept: "text/html,application/xhtml+xml,*/*;q=0.8" };
      expect((await stack.request(t.host, "/", { headers: html }, last())).status).toBe(200);
      const contacts = stack.upstreamContacts;
      const page = await stack.request(t.host, "/", { headers: html }, last());
      expect(page.status).toBe(429);
      expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
      expect(page.headers["retry-after"]).toBeDefined();
      expect(page.headers["content-security-policy"]).toContain("default-src 'none'");
      expect(page.text).not.toContain("<script>");
      expect(page.text).toContain("&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;&#39;&#38;");
      expect(page.text).toContain("#abcdef");
      expect(page.text).toContain(page.headers["x-request-id"] as string);
      const json = await stack.request(t.host, "/", { headers: { accept: "application/json" } }, last());
      expect(json.status).toBe(429);
      expect(json.json().error.code).toBe("rate_limited");

      await stack.admin("PATCH", "/v1/tenants/htmlpage", { status: "suspended" });
      await eventually(async () => (await stack.request(t.host, "/", { headers: html }, last())).status === 403, 1_000);
      const suspended = await stack.request(t.host, "/", { headers: html }, last());
      expect(suspended.headers["content-type"]).toBe("text/html; charset=utf-8");
      expect(suspended.text).toContain("This tenant is suspended.");
      expect(suspended.text).not.toContain("<script>");
      expect(stack.upstreamContacts).toBe(contacts);
      // An unknown host has no branding to show: the plain JSON refusal.
      const unknown = await stack.request("nobody.localhost", "/", { headers: html });
      expect(unknown.status).toBe(404);
      expect(unknown.headers["content-type"]).toBe("application/json");
    });

    it("meters requests, refusals and bytes per tenant, reported by GET /v1/tenants/:tenant/usage", async () => {
      const t = await tenant("metered", { limits: { requestsPerSecond: 0.2, burst: 3 } });
      const empty = await stack.admin("GET", "/v1/tenants/metered/usage");
      expect(empty.status).toBe(200);
      const now = new Date();
      const period = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, "0")}`;
      expect(empty.json()).toEqual({ period, requests: 0, refused: 0, bytesIn: 0, bytesOut: 0 });
      let bytesOut = 0;
      for (let i = 0; i < 3; i++) {
        const res = await stack.request(t.host, "/", { method: "POST", body: "0123456789" }, stack.routers[i % 2]);
        expect(res.status).toBe(200);
        bytesOut += Buffer.byteLength(res.text);
      }
      for (let i = 0; i < 2; i++) expect((await stack.request(t.host, "/", {}, stack.routers[i % 2])).status).toBe(429);
      await eventually(async () => (await stack.admin("GET", "/v1/tenants/metered/usage")).json().refused === 2, 5_000, 100);
      const usage = (await stack.admin("GET", "/v1/tenants/metered/usage")).json();
      expect(usage).toEqual({ period, requests: 3, refused: 2, bytesIn: 30, bytesOut });
      expect((await stack.admin("GET", "/v1/tenants/nobody/usage")).status).toBe(404);
    });

    it("keeps counted usage across a router restart (closed routers flush what they counted)", async () => {
      const t = await tenant("restarted");
      const router = await stack.addRouter();
      for (let i = 0; i < 5; i++) expect((await stack.request(t.host, "/", {}, router)).status).toBe(200);
      await router.close();
      stack.routers.splice(stack.routers.indexOf(router), 1);
      const again = await stack.addRouter();
      for (let i = 0; i < 2; i++) expect((await stack.request(t.host, "/", {}, again)).status).toBe(200);
      await again.close();
      stack.routers.splice(stack.routers.indexOf(again), 1);
      expect((await stack.admin("GET", "/v1/tenants/restarted/usage")).json().requests).toBe(7);
    });
  });
}
