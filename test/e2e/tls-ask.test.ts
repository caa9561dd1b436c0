/**
 * The on-demand TLS permission endpoint a TLS terminator (Caddy's `on_demand_tls
 * ask`) calls before issuing a certificate: unauthenticated, 2xx only for verified
 * hostnames of active tenants, answered from the control plane's in-process cache,
 * which follows the control plane's own writes at once and other control-plane
 * processes' writes through the invalidation channel.
 */
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createControlPlane, loadControlPlaneConfig } from "@portcullis/control-plane";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { send } from "../helpers/http.ts";
import { type Backend, eventually, startTestStack, type TestStack } from "../helpers/stack.ts";

for (const backend of ["real", "embedded"] as Backend[]) {
  describe(`GET /v1/tls/ask, ${backend}`, () => {
    let dns: TestDnsServer;
    let stack: TestStack;

    beforeAll(async () => {
      dns = await startDnsServer();
      stack = await startTestStack({ backend, env: { DNS_SERVERS: dns.address, DOMAIN_RECHECK_INTERVAL_MS: "0" } });
      await stack.tenant("acme");
      await stack.tenant("globex");
    });
    afterAll(async () => {
      await stack?.close();
      await dns?.close();
    });

    // No Authorization header: Caddy sends none.
    const ask = (domain: string | null) =>
      send(stack.adminPort, "127.0.0.1", domain === null ? "/v1/tls/ask" : `/v1/tls/ask?domain=${encodeURIComponent(domain)}`);

    async function verified(tenant: string, hostname: string) {
      const claimed = (await stack.admin("POST", `/v1/tenants/${tenant}/hostnames`, { hostname })).json();
      dns.setTxt(claimed.verification.name, [claimed.verification.value]);
      return claimed;
    }

    it("answers without credentials, while every other admin route still requires the token", async () => {
      const res = await ask("acme.localhost");
      expect(res.status).toBe(200);
      expect(res.json()).toMatchObject({ allowed: true, hostname: "acme.localhost" });
      const other = await send(stack.adminPort, "127.0.0.1", "/v1/tenants");
      expect(other.status).toBe(401);
      const sneaky = await send(stack.adminPort, "127.0.0.1", "/v1/tls/ask/../tenants");
      expect(sneaky.status).toBe(401);
    });

    it("refuses unknown, invalid, platform-internal and missing domains", async () => {
      expect((await ask("nobody.localhost")).status).toBe(404);
      expect((await ask("unknown.example.com")).status).toBe(404);
      expect((await ask("api.localhost")).status).toBe(404);
      expect((await ask("localhost")).status).toBe(404);
      for (const bad of ["*.acme.localhost", "127.0.0.1", "bad_name.com", ""]) {
        expect((await ask(bad)).status, bad).toBe(400);
      }
      expect((await ask(null)).status).toBe(400);
    });

    it("follows a custom domain from pending to verified to deleted with no stale answer", async () => {
      await verified("acme", "shop.acme-tls.test");
      const pending = await ask("shop.acme-tls.test");
      expect(pending.status).toBe(404);
      expect(pending.json().code).toBe("not_verified");
      // The negative answer is cached now; verification must replace it at once.
      expect((await stack.admin("POST", "/v1/tenants/acme/hostnames/shop.acme-tls.test/verify")).status).toBe(200);
      expect((await ask("shop.acme-tls.test")).status).toBe(200);
      // Every spelling of the name gets the same answer.
      expect((await ask("SHOP.Acme-TLS.test.")).status).toBe(200);
      // Warm: answered from memory, no database round trip.
      expect(stack.cp.tlsAsk.ask("shop.acme-tls.test")).toMatchObject({ allowed: true });

      expect((await stack.admin("DELETE", "/v1/tenants/acme/hostnames/shop.acme-tls.test")).status).toBe(204);
      expect((await ask("shop.acme-tls.test")).status).toBe(404);
    });

    it("answers 4xx for every hostname of a suspended or deleted tenant, at once", async () => {
      await verified("globex", "www.globex-tls.test");
      expect((await stack.admin("POST", "/v1/tenants/globex/hostnames/www.globex-tls.test/verify")).status).toBe(200);
      expect((await ask("www.globex-tls.test")).status).toBe(200);
      expect((await ask("globex.localhost")).status).toBe(200);

      expect((await stack.admin("PATCH", "/v1/tenants/globex", { status: "suspended" })).status).toBe(200);
      const suspended = await ask("www.globex-tls.test");
      expect(suspended.status).toBe(404);
      expect(suspended.json().code).toBe("tenant_inactive");
      expect((await ask("globex.localhost")).status).toBe(404);

      expect((await stack.admin("PATCH", "/v1/tenants/globex", { status: "active" })).status).toBe(200);
      expect((await ask("www.globex-tls.test")).status).toBe(200);

      expect((await stack.admin("DELETE", "/v1/tenants/globex")).status).toBe(204);
      expect((await ask("www.globex-tls.test")).status).toBe(404);
      expect((await ask("globex.localhost")).status).toBe(404);
    });

    it("follows writes made by another control-plane process within 1 s (invalidation channel)", async () => {
      expect((await ask("acme.localhost")).status).toBe(200);
      const other = await createControlPlane(loadControlPlaneConfig(stack.env), {
        store: stack.store,
        database: stack.cp.database,
        log: pino({ level: "silent" }),
        jobs: false,
      });
      try {
        const patched = await other.tenants.patch("acme", { status: "suspended" });
        expect(patched.ok).toBe(true);
        await eventually(async () => (await ask("acme.localhost")).status === 404, 1_000);
        await other.tenants.patch("acme", { status: "active" });
        await eventually(async () => (await ask("acme.localhost")).status === 200, 1_000);
      } finally {
        await other.publisher.flush();
        await other.close();
      }
    });
  });
}
