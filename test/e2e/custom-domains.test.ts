/**
 * Custom-domain lifecycle against a real DNS server on loopback (the test starts
 * it; the control plane reaches it through DNS_SERVERS): verification by TXT record,
 * tokens bound to one claim, routing within 1 s of verification, and periodic
 * re-verification that fails a domain whose proof disappeared past the grace period
 * (audited, alerted, no longer routed, no longer given certificates).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { and, eq } from "drizzle-orm";
import { adminChanges, hostnames } from "../../control-plane/src/db/schema/index.ts";
import { RECHECK_ACTOR } from "../../control-plane/src/domains/recheck.ts";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { type Backend, eventually, startTestStack, type TestStack } from "../helpers/stack.ts";
import { startWebhookReceiver, type WebhookReceiver } from "../helpers/webhook.ts";

const GRACE_MS = 10 * 60 * 1000;
const UNVERIFIED_TTL_MS = 7 * 24 * 60 * 60 * 1000;

for (const backend of ["real", "embedded"] as Backend[]) {
  describe(`custom domains (real DNS on loopback), ${backend}`, () => {
    let dns: TestDnsServer;
    let hook: WebhookReceiver;
    let stack: TestStack;
    let acme: Awaited<ReturnType<TestStack["tenant"]>>;
    let globex: Awaited<ReturnType<TestStack["tenant"]>>;

    beforeAll(async () => {
      dns = await startDnsServer();
      hook = await startWebhookReceiver();
      // Two routers: a change must reach every router, not only the one that asked last.
      stack = await startTestStack({
        backend,
        routers: 2,
        env: {
          DNS_SERVERS: dns.address,
          ALERT_WEBHOOK_URL: hook.url,
          DOMAIN_RECHECK_INTERVAL_MS: "0",
          DOMAIN_RECHECK_GRACE_MS: String(GRACE_MS),
          DOMAIN_UNVERIFIED_TTL_MS: String(UNVERIFIED_TTL_MS),
        },
      });
      acme = await stack.tenant("acme");
      globex = await stack.tenant("globex");
    });
    afterAll(async () => {
      await stack?.close();
      await dns?.close();
      await hook?.close();
    });

    async function claim(tenant: string, hostname: string) {
      const res = await stack.admin("POST", `/v1/tenants/${tenant}/hostnames`, { hostname });
      expect(res.status, res.text).toBe(201);
      return res.json() as { hostname: string; status: string; verification: { type: string; name: string; value: string } };
    }

    async function refusedAt(host: string) {
      const contacts = stack.upstreamContacts;
      // The stack's audit trail is the last router's (test/helpers/stack.ts).
      const res = await stack.request(host, "/", {}, stack.routers.at(-1));
      expect(res.status, host).toBe(404);
      expect(res.json().error.code).toBe("unknown_host");
      const events = await stack.auditFor(res.json().error.requestId);
      expect(events[0]?.reason).toBe("unknown_host");
      expect(stack.upstreamContacts).toBe(contacts);
    }

    const routesTo = async (host: string, app: string) => {
      for (const router of stack.routers) {
        const res = await stack.request(host, "/", {}, router);
        if (res.status !== 200 || res.json().app !== app) return false;
      }
      return true;
    };
    const unrouted = async (host: string) => {
      for (const router of stack.routers) if ((await stack.request(host, "/", {}, router)).status !== 404) return false;
      return true;
    };

    it("verifies a claimed domain through its TXT record and routes it within 1 s", async () => {
      const claimed = await claim("acme", "Shop.Acme-Corp.TEST.");
      expect(claimed).toMatchObject({ hostname: "shop.acme-corp.test", status: "pending" });
      expect(claimed.verification.type).toBe("dns-txt");
      expect(claimed.verification.name).toBe("_portcullis-verify.shop.acme-corp.test");
      expect(claimed.verification.value).toMatch(/^portcullis-verify=[0-9a-f]{40}$/);

      // Pending: not routed.
      await refusedAt("shop.acme-corp.test");

      dns.setTxt(claimed.verification.name, ["v=spf1 -all", claimed.verification.value]);
      const verified = await stack.admin("POST", "/v1/tenants/acme/hostnames/shop.acme-corp.test/verify");
      expect(verified.status, verified.text).toBe(200);
      expect(verified.json().status).toBe("verified");
      expect(dns.queries.some((q) => q.name === claimed.verification.name && q.type === 16)).toBe(true);

      await eventually(() => routesTo("shop.acme-corp.test", "acme-app"), 1_000);
      const seen = acme.upstream.requests.at(-1)!;
      expect(seen.headers["x-tenant-id"]).toBe(acme.id);
      expect(seen.headers["x-forwarded-host"]).toBe("shop.acme-corp.test");
      const tenant = (await stack.admin("GET", "/v1/tenants/acme")).json();
      expect(tenant.hostnames).toContainEqual({ hostname: "shop.acme-corp.test", kind: "custom", status: "verified" });
    });

    it("refuses verification without a record and with a wrong value; the domain stays unrouted", async () => {
      const claimed = await claim("acme", "blog.acme-corp.test");
      const none = await stack.admin("POST", "/v1/tenants/acme/hostnames/blog.acme-corp.test/verify");
      expect(none.status).toBe(422);
      expect(none.json().error.code).toBe("verification_failed");
      expect(none.json().error.detail).toMatch(/no TXT record/);

      dns.setTxt(claimed.verification.name, ["portcullis-verify=0000000000000000000000000000000000000000"]);
      const wrong = await stack.admin("POST", "/v1/tenants/acme/hostnames/blog.acme-corp.test/verify");
      expect(wrong.status).toBe(422);
      expect(wrong.json().error.detail).toMatch(/expected value/);

      // The right value in the wrong place (the bare hostname, not the _portcullis-verify name) proves nothing.
      dns.remove(claimed.verification.name);
      dns.setTxt("blog.acme-corp.test", [claimed.verification.value]);
      const misplaced = await stack.admin("POST", "/v1/tenants/acme/hostnames/blog.acme-corp.test/verify");
      expect(misplaced.status).toBe(422);

      // A resolver failure is a failure, never a pass.
      dns.servfail(claimed.verification.name);
      const broken = await stack.admin("POST", "/v1/tenants/acme/hostnames/blog.acme-corp.test/verify");
      expect(broken.status).toBe(422);

      await refusedAt("blog.acme-corp.test");
      const row = (await stack.admin("GET", "/v1/tenants/acme"))
        .json()
        .hostnames.find((h: any) => h.hostname === "blog.acme-corp.test");
      expect(row.status).toBe("pending");
    });

    it("never accepts one claim's token for another hostname or another tenant", async () => {
      const a = await claim("acme", "app.acme-corp.test");
      const b = await claim("globex", "app.globex-corp.test");
      expect(a.verification.value).not.toBe(b.verification.value);
      // acme publishes its own token at globex's record name: globex's claim is not proven.
      dns.setTxt(b.verification.name, [a.verification.value]);
      const cross = await stack.admin("POST", "/v1/tenants/globex/hostnames/app.globex-corp.test/verify");
      expect(cross.status).toBe(422);
      // And a tenant cannot verify (or even see) a name it does not own.
      dns.setTxt(a.verification.name, [a.verification.value]);
      const foreign = await stack.admin("POST", "/v1/tenants/globex/hostnames/app.acme-corp.test/verify");
      expect(foreign.status).toBe(404);
      await refusedAt("app.acme-corp.test");
      await refusedAt("app.globex-corp.test");

      // Churn: acme verifies a name, then gives it up; its old record stays in DNS.
      const old = await claim("acme", "old.acme-corp.test");
      dns.setTxt(old.verification.name, [old.verification.value]);
      expect((await stack.admin("POST", "/v1/tenants/acme/hostnames/old.acme-corp.test/verify")).status).toBe(200);
      expect((await stack.admin("DELETE", "/v1/tenants/acme/hostnames/old.acme-corp.test")).status).toBe(204);
      // globex claims the same name: it gets a fresh token, and acme's leftover record does not verify it.
      const again = await claim("globex", "old.acme-corp.test");
      expect(again.verification.value).not.toBe(old.verification.value);
      const stale = await stack.admin("POST", "/v1/tenants/globex/hostnames/old.acme-corp.test/verify");
      expect(stale.status).toBe(422);
      await refusedAt("old.acme-corp.test");
      expect(globex.upstream.requests.every((r) => r.headers["x-forwarded-host"] !== "old.acme-corp.test")).toBe(true);
    });

    it("fails a verified domain whose record disappeared past the grace period: unrouted within 1 s, audited, alerted", async () => {
      const claimed = await claim("globex", "www.globex-corp.test");
      dns.setTxt(claimed.verification.name, [claimed.verification.value]);
      expect((await stack.admin("POST", "/v1/tenants/globex/hostnames/www.globex-corp.test/verify")).status).toBe(200);
      await eventually(() => routesTo("www.globex-corp.test", "globex-app"), 1_000);

      const t0 = new Date();
      const at = (ms: number) => new Date(t0.getTime() + ms);
      const first = await stack.cp.domains.recheckDomains(t0);
      expect(first.confirmed).toContain("www.globex-corp.test");

      // The record disappears. Within the grace period the domain keeps routing.
      dns.remove(claimed.verification.name);
      const missing = await stack.cp.domains.recheckDomains(at(1_000));
      expect(missing.missing).toContain("www.globex-corp.test");
      expect(missing.failed).toEqual([]);
      const later = await stack.cp.domains.recheckDomains(at(GRACE_MS / 2));
      expect(later.missing).toContain("www.globex-corp.test");
      expect(await routesTo("www.globex-corp.test", "globex-app")).toBe(true);

      // It comes back: the grace period resets.
      dns.setTxt(claimed.verification.name, [claimed.verification.value]);
      const back = await stack.cp.domains.recheckDomains(at(GRACE_MS / 2 + 1_000));
      expect(back.confirmed).toContain("www.globex-corp.test");
      const [reset] = await stack.cp.database.db
        .select({ missingSince: hostnames.missingSince, status: hostnames.status })
        .from(hostnames)
        .where(eq(hostnames.hostname, "www.globex-corp.test"));
      expect(reset).toEqual({ missingSince: null, status: "verified" });

      // Gone for good: the first miss starts the clock, a miss past the grace period fails it.
      dns.remove(claimed.verification.name);
      const goneAt = at(GRACE_MS);
      await stack.cp.domains.recheckDomains(goneAt);
      const alertsBefore = hook.received.length;
      const final = await stack.cp.domains.recheckDomains(new Date(goneAt.getTime() + GRACE_MS + 1));
      expect(final.failed).toEqual(["www.globex-corp.test"]);
      // The other verified domain (acme's shop) still has its record: untouched.
      expect(final.confirmed).toContain("shop.acme-corp.test");

      await eventually(() => unrouted("www.globex-corp.test"), 1_000);
      await refusedAt("www.globex-corp.test");
      expect(await routesTo("shop.acme-corp.test", "acme-app")).toBe(true);

      const tenant = (await stack.admin("GET", "/v1/tenants/globex")).json();
      expect(tenant.hostnames).toContainEqual({ hostname: "www.globex-corp.test", kind: "custom", status: "failed" });

      const changes = await stack.cp.database.db
        .select()
        .from(adminChanges)
        .where(and(eq(adminChanges.target, "www.globex-corp.test"), eq(adminChanges.action, "hostname.failed")));
      expect(changes).toHaveLength(1);
      expect(changes[0]).toMatchObject({ actor: RECHECK_ACTOR, tenantId: globex.id, before: { status: "verified" } });
      expect((changes[0]!.after as any).status).toBe("failed");
      expect((changes[0]!.after as any).missingSince).toBe(goneAt.toISOString());

      expect(hook.received.length).toBe(alertsBefore + 1);
      const alert = hook.received.at(-1)!;
      expect(alert.contentType).toMatch(/application\/json/);
      expect(alert.body).toMatchObject({ source: "portcullis", type: "custom_domains_failed", severity: "critical" });
      expect(alert.body.domains).toEqual([
        expect.objectContaining({
          hostname: "www.globex-corp.test",
          tenantId: globex.id,
          tenantSlug: "globex",
          reason: "no TXT record",
        }),
      ]);

      // A later run neither fails it again nor alerts again.
      const after = await stack.cp.domains.recheckDomains(new Date(goneAt.getTime() + 2 * GRACE_MS));
      expect(after.failed).toEqual([]);
      expect(hook.received.length).toBe(alertsBefore + 1);

      // The owner can prove control again: verified, and routed within 1 s.
      dns.setTxt(claimed.verification.name, [claimed.verification.value]);
      expect((await stack.admin("POST", "/v1/tenants/globex/hostnames/www.globex-corp.test/verify")).status).toBe(200);
      await eventually(() => routesTo("www.globex-corp.test", "globex-app"), 1_000);
    });

    it("counts a record answering with another value, or a failing resolver, as missing", async () => {
      const claimed = await claim("acme", "api.acme-corp.test");
      dns.setTxt(claimed.verification.name, [claimed.verification.value]);
      expect((await stack.admin("POST", "/v1/tenants/acme/hostnames/api.acme-corp.test/verify")).status).toBe(200);
      const t0 = Date.now() + 10 * GRACE_MS;
      dns.setTxt(claimed.verification.name, ["portcullis-verify=someone-else"]);
      expect((await stack.cp.domains.recheckDomains(new Date(t0))).missing).toContain("api.acme-corp.test");
      dns.servfail(claimed.verification.name);
      const failed = await stack.cp.domains.recheckDomains(new Date(t0 + GRACE_MS));
      expect(failed.failed).toContain("api.acme-corp.test");
      await eventually(() => unrouted("api.acme-corp.test"), 1_000);
    });

    it("releases claims nobody proved (pending, or failed and not re-verified) after the TTL, so names cannot be squatted", async () => {
      const squat = await claim("globex", "bigcorp.example");
      const early = await stack.cp.domains.recheckDomains(new Date(Date.now() + UNVERIFIED_TTL_MS / 2));
      expect(early.released).toEqual([]);
      expect((await stack.admin("POST", "/v1/tenants/acme/hostnames", { hostname: "bigcorp.example" })).status).toBe(409);

      const late = await stack.cp.domains.recheckDomains(new Date(Date.now() + 10 * GRACE_MS + 2 * UNVERIFIED_TTL_MS));
      expect(late.released).toContain("bigcorp.example");
      // api.acme-corp.test failed in an earlier test and was never verified again.
      expect(late.released).toContain("api.acme-corp.test");
      // Verified domains are never released.
      expect(late.released).not.toContain("www.globex-corp.test");
      expect(late.released).not.toContain("shop.acme-corp.test");
      expect(await routesTo("www.globex-corp.test", "globex-app")).toBe(true);

      const rows = await stack.cp.database.db
        .select()
        .from(adminChanges)
        .where(and(eq(adminChanges.target, "bigcorp.example"), eq(adminChanges.action, "hostname.released")));
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ actor: RECHECK_ACTOR, tenantId: globex.id, before: { status: "pending" } });

      // The real owner can now claim it, with a token of its own.
      const owner = await claim("acme", "bigcorp.example");
      expect(owner.verification.value).not.toBe(squat.verification.value);
    });

    it("stops routing a deleted domain within 1 s", async () => {
      expect(await routesTo("shop.acme-corp.test", "acme-app")).toBe(true);
      const del = await stack.admin("DELETE", "/v1/tenants/acme/hostnames/SHOP.acme-corp.test.");
      expect(del.status).toBe(204);
      await eventually(() => unrouted("shop.acme-corp.test"), 1_000);
      await refusedAt("shop.acme-corp.test");
    });
  });
}
