/**
 * The foundation's end-to-end contract, over real sockets: against real Postgres and
 * Redis, and the same suite against the embedded defaults (PGlite, in-process store).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CACHE, contextKeysFrom, verifyTenantContext } from "@portcullis/shared";
import { eventually, SECRETS, startTestStack, type Backend, type TestStack } from "../helpers/stack.ts";

for (const backend of ["real", "embedded"] as Backend[]) {
  describe(`host routing (${backend})`, () => {
    let stack: TestStack;
    let acme: Awaited<ReturnType<TestStack["tenant"]>>;
    let globex: Awaited<ReturnType<TestStack["tenant"]>>;

    beforeAll(async () => {
      stack = await startTestStack({ backend });
      acme = await stack.tenant("acme");
      globex = await stack.tenant("globex");
    });
    afterAll(async () => {
      await stack?.close();
    });

    it("routes each tenant only to its own upstream, with verifiable signed context", async () => {
      for (const t of [acme, globex]) {
        const before = { acme: acme.upstream.requests.length, globex: globex.upstream.requests.length };
        const res = await stack.request(t.host, "/orders?page=2");
        expect(res.status).toBe(200);
        const body = res.json();
        expect(body.app).toBe(`${t.slug}-app`);
        expect(body.signatureValid).toBe(true);
        expect(body.path).toBe("/orders?page=2");
        const other = t === acme ? globex : acme;
        expect(t.upstream.requests.length).toBe(before[t.slug as "acme" | "globex"] + 1);
        expect(other.upstream.requests.length).toBe(before[other.slug as "acme" | "globex"]);
        const seen = t.upstream.requests.at(-1)!;
        const verified = verifyTenantContext(seen, contextKeysFrom(SECRETS.CONTEXT_SIGNING_SECRET));
        expect(verified.ok).toBe(true);
        if (!verified.ok) continue;
        expect(verified.context["x-tenant-id"]).toBe(t.id);
        expect(verified.context["x-tenant-slug"]).toBe(t.slug);
        expect(verified.context["x-tenant-db"]).toBe(`${t.db.server}/${t.db.database}`);
        expect(verified.context["x-tenant-auth"]).toBe("hostname");
        expect(verified.context["x-forwarded-host"]).toBe(t.host);
        expect(seen.headers["x-request-id"]).toBe(res.headers["x-request-id"]);
        // A different secret does not verify: the signature is real.
        expect(verifyTenantContext(seen, contextKeysFrom("another-secret-0123456789")).ok).toBe(false);
      }
    });

    it("normalizes case, port and one trailing dot of the Host", async () => {
      for (const host of ["ACME.LocalHost", "acme.localhost:8080", "acme.localhost."]) {
        const res = await stack.request(host);
        expect(res.status, host).toBe(200);
        expect(res.json().app).toBe("acme-app");
      }
    });

    it("refuses unknown, look-alike and sub-subdomain hosts without contacting any upstream", async () => {
      const contacts = stack.upstreamContacts;
      const hosts = [
        "nobody.localhost",
        "www.acme.localhost",
        "acme.localhost.evil.com",
        "acme-localhost",
        "acme.localhos",
        "acme.localhost..",
        "localhost",
        "xn--acme-xxa.localhost",
        "acme.localhost:0",
        "127.0.0.1",
        "[::1]",
        "*.localhost",
        "acme_.localhost",
      ];
      for (const host of hosts) {
        const res = await stack.request(host);
        expect([400, 404], host).toContain(res.status);
        const body = res.json();
        expect(body.error.requestId).toBe(res.headers["x-request-id"]);
        const events = await stack.auditFor(body.error.requestId);
        expect(events, host).toHaveLength(1);
        expect(events[0]?.decision).toBe("refuse");
      }
      expect(stack.upstreamContacts).toBe(contacts);
    });

    it("never lets client x-tenant-*, X-Forwarded-* or Forwarded headers reach the upstream as tenant values", async () => {
      const res = await stack.request(acme.host, "/", {
        headers: {
          "x-tenant-id": globex.id,
          "X-Tenant-Slug": "globex",
          "x-tenant-db": "pg-globex.internal:5432/globex",
          x_tenant_id: globex.id,
          "X-Tenant-Signature": "t=1,v1=00",
          "x-forwarded-host": globex.host,
          "x-forwarded-for": "6.6.6.6",
          "x-forwarded-proto": "https",
          forwarded: `for=6.6.6.6;host=${globex.host};proto=https`,
          "x-user-id": "usr_evil",
          "x-real-ip": "6.6.6.6",
          "x-original-url": "/admin",
          "x-http-method-override": "DELETE",
          "x-app-header": "kept",
        },
      });
      expect(res.status).toBe(200);
      const seen = acme.upstream.requests.at(-1)!;
      expect(seen.headers["x-tenant-id"]).toBe(acme.id);
      expect(seen.headers["x-tenant-slug"]).toBe("acme");
      expect(seen.headers["x-tenant-db"]).toBe(`${acme.db.server}/${acme.db.database}`);
      expect(seen.headers.x_tenant_id).toBeUndefined();
      expect(seen.headers["x-forwarded-host"]).toBe(acme.host);
      expect(seen.headers["x-forwarded-for"]).toBe("127.0.0.1");
      expect(seen.headers["x-forwarded-proto"]).toBe("http");
      expect(seen.headers.forwarded).toBeUndefined();
      expect(seen.headers["x-user-id"]).toBeUndefined();
      expect(seen.headers["x-real-ip"]).toBeUndefined();
      expect(seen.headers["x-original-url"]).toBeUndefined();
      expect(seen.headers["x-http-method-override"]).toBeUndefined();
      expect(seen.headers["x-app-header"]).toBe("kept");
      // Each context header appears exactly once.
      const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      for (const h of ["x-tenant-id", "x-tenant-slug", "x-forwarded-host", "x-forwarded-for", "host"]) {
        expect(
          names.filter((n) => n === h),
          h,
        ).toHaveLength(1);
      }
      expect(verifyTenantContext(seen, contextKeysFrom(SECRETS.CONTEXT_SIGNING_SECRET)).ok).toBe(true);
    });

    it("strips headers the client names in Connection (raw bytes: clients normally cannot send this)", async () => {
      const { raw, statuses } = await import("../helpers/http.ts");
      const out = await raw(
        stack.port,
        `GET /conn HTTP/1.1\r\nHost: ${acme.host}\r\nConnection: keep-alive, X-Tenant-Override, x-keep-me\r\nx-keep-me: dropped\r\nX-Tenant-Override: ${globex.id}\r\nx-app: kept\r\n\r\n`,
      );
      expect(statuses(out)).toEqual([200]);
      const seen = acme.upstream.requests.at(-1)!;
      expect(seen.url).toBe("/conn");
      expect(seen.headers["x-keep-me"]).toBeUndefined();
      expect(seen.headers["x-tenant-override"]).toBeUndefined();
      expect(seen.headers["x-app"]).toBe("kept");
      expect(seen.headers["x-tenant-id"]).toBe(acme.id);
    });

    it("refuses a suspended tenant (403) and a tenant without a database binding (503), contacting no upstream", async () => {
      const sus = await stack.tenant("suspendme");
      const unbound = await stack.tenant("unbound", { bind: false });
      expect((await stack.request(sus.host)).status).toBe(200);
      const patched = await stack.admin("PATCH", "/v1/tenants/suspendme", { status: "suspended" });
      expect(patched.status).toBe(200);
      await eventually(async () => (await stack.request(sus.host)).status === 403, 1_000);
      const contacts = stack.upstreamContacts;
      const suspended = await stack.request(sus.host);
      expect(suspended.status).toBe(403);
      expect(suspended.json().error.code).toBe("tenant_suspended");
      const noBinding = await stack.request(unbound.host);
      expect(noBinding.status).toBe(503);
      expect(noBinding.json().error.code).toBe("tenant_unavailable");
      expect(stack.upstreamContacts).toBe(contacts);
      const events = await stack.auditFor(noBinding.json().error.requestId);
      expect(events[0]?.reason).toBe("binding_missing");
    });

    it("stops routing a deleted tenant within 1 s", async () => {
      const gone = await stack.tenant("gone");
      expect((await stack.request(gone.host)).status).toBe(200);
      const del = await stack.admin("DELETE", "/v1/tenants/gone");
      expect(del.status).toBe(204);
      const elapsed = await eventually(async () => (await stack.request(gone.host)).status === 404, 1_000);
      expect(elapsed).toBeLessThan(1_000);
      // A request sent while the deletion was still on its way may have been routed;
      // none after the first refusal is.
      const contacts = gone.upstream.requests.length;
      expect((await stack.request(gone.host)).status).toBe(404);
      expect(gone.upstream.requests.length).toBe(contacts);
    });

    it("switches to a changed upstream within 1 s", async () => {
      const moving = await stack.tenant("moving");
      const next = await stack.upstream("moving-v2");
      expect((await stack.request(moving.host)).json().app).toBe("moving-app");
      const put = await stack.admin("PUT", "/v1/tenants/moving/upstreams", { urls: [next.url] });
      expect(put.status).toBe(200);
      await eventually(async () => (await stack.request(moving.host)).json().app === "moving-v2", 1_000);
    });

    it("a database server serves at most one tenant", async () => {
      const taken = await stack.admin("PUT", `/v1/tenants/globex/database`, acme.db);
      expect(taken.status).toBe(409);
      expect(taken.json().error.code).toBe("server_taken");
    });

    it("answers the admin API only with the admin token", async () => {
      const { send } = await import("../helpers/http.ts");
      for (const authorization of [undefined, "Bearer wrong", `Bearer ${SECRETS.ADMIN_TOKEN}x`, SECRETS.ADMIN_TOKEN]) {
        const res = await send(stack.adminPort, "127.0.0.1", "/v1/tenants", authorization ? { headers: { authorization } } : {});
        expect(res.status).toBe(401);
        expect(res.json().error.code).toBe("unauthorized");
      }
    });

    it("purges a cached 'not found' when the tenant is created", async () => {
      expect((await stack.request("late.localhost")).status).toBe(404);
      await stack.tenant("late");
      const elapsed = await eventually(async () => (await stack.request("late.localhost")).status === 200, 1_000);
      expect(elapsed).toBeLessThan(CACHE.host.negativeMs);
    });
  });
}
