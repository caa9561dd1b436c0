/**
 * Tenant-bound API keys end to end over real sockets, against real Postgres and Redis
 * and again against the embedded defaults (PGlite, in-process store): the key alone
 * selects the tenant on API_HOSTNAME, must match the tenant on a tenant hostname, is
 * never forwarded, and every invalid case is one byte-identical 401.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey, contextKeysFrom, verifyTenantContext } from "@portcullis/shared";
import { raw, statuses } from "../helpers/http.ts";
import {
  type Backend,
  eventually,
  SECRETS,
  sampleUntil,
  startTestStack,
  type TestStack,
  propagatesWithin,
} from "../helpers/stack.ts";

const API = "api.localhost";

for (const backend of ["real", "embedded"] as Backend[]) {
  describe(`API keys (${backend})`, () => {
    let stack: TestStack;
    let acme: Awaited<ReturnType<TestStack["tenant"]>>;
    let globex: Awaited<ReturnType<TestStack["tenant"]>>;

    async function createKey(tenant: string, body: Record<string, unknown> = {}) {
      const res = await stack.admin("POST", `/v1/tenants/${tenant}/keys`, body);
      expect(res.status).toBe(201);
      await stack.cp.publisher.flush();
      return res.json() as { id: string; key: string; prefix: string };
    }

    /** A refusal: status, code, no upstream contact, and its audit reason. */
    async function refused(
      host: string,
      options: Parameters<TestStack["request"]>[2],
      expected: { status: number; reason: string; path?: string },
    ) {
      const contacts = stack.upstreamContacts;
      const res = await stack.request(host, expected.path ?? "/", options);
      expect(res.status, expected.reason).toBe(expected.status);
      const requestId = res.json().error.requestId as string;
      expect(requestId).toBe(res.headers["x-request-id"]);
      const events = await stack.auditFor(requestId);
      expect(events, expected.reason).toHaveLength(1);
      expect(events[0]?.decision).toBe("refuse");
      expect(events[0]?.reason).toBe(expected.reason);
      expect(stack.upstreamContacts, `${expected.reason}: no upstream contact`).toBe(contacts);
      return { res, event: events[0]! };
    }

    beforeAll(async () => {
      stack = await startTestStack({ backend, env: { KEY_USAGE_FLUSH_MS: "100", KEY_USAGE_REPORT_MS: "100" } });
      acme = await stack.tenant("acme", { plan: "enterprise" });
      globex = await stack.tenant("globex", { plan: "enterprise" });
    });
    afterAll(async () => {
      await stack?.close();
    });

    it("shows a key once at creation and lists keys without their secrets", async () => {
      const created = await createKey("acme", { name: "ci" });
      expect(created.key).toMatch(/^pck_[0-9A-Za-z]{38}$/);
      expect(created.key.startsWith(created.prefix)).toBe(true);
      const list = await stack.admin("GET", "/v1/tenants/acme/keys");
      expect(list.status).toBe(200);
      const listed = list.json().keys.find((k: { id: string }) => k.id === created.id);
      expect(listed).toMatchObject({ id: created.id, prefix: created.prefix, name: "ci", status: "active" });
      // Neither the key nor its random part appears in the listing.
      expect(list.text).not.toContain(created.key);
      expect(list.text).not.toContain(created.key.slice(12));
    });

    it("on API_HOSTNAME the key alone selects its tenant (Bearer and X-API-Key); the key never reaches the upstream; other cookies pass", async () => {
      const { id, key } = await createKey("acme");
      const globexContacts = globex.upstream.requests.length;
      const styles: Record<string, string>[] = [
        { authorization: `Bearer ${key}` },
        { "x-api-key": key },
        { authorization: `bearer  ${key}` },
      ];
      for (const headers of styles) {
        // A client-supplied tenant selector is ignored: only the key names the tenant.
        const res = await stack.request(API, "/v1/orders?page=1", {
          headers: { ...headers, cookie: "theme=dark; cart=42", "x-tenant-id": globex.id, "x-tenant-slug": "globex" },
        });
        expect(res.status).toBe(200);
        expect(res.json().app).toBe("acme-app");
        const seen = acme.upstream.requests.at(-1)!;
        expect(seen.url).toBe("/v1/orders?page=1");
        expect(seen.headers.authorization).toBeUndefined();
        expect(seen.headers["x-api-key"]).toBeUndefined();
        expect(seen.rawHeaders.join("\n")).not.toContain(key.slice(4));
        expect(seen.headers.cookie).toBe("theme=dark; cart=42");
        expect(seen.headers["x-tenant-id"]).toBe(acme.id);
        expect(seen.headers["x-tenant-slug"]).toBe("acme");
        const verified = verifyTenantContext(seen, contextKeysFrom(SECRETS.CONTEXT_SIGNING_SECRET));
        expect(verified.ok).toBe(true);
        if (verified.ok) {
          expect(verified.context["x-tenant-id"]).toBe(acme.id);
          expect(verified.context["x-tenant-auth"]).toBe("api-key");
          expect(verified.context["x-tenant-key-id"]).toBe(id);
          expect(verified.context["x-forwarded-host"]).toBe(API);
        }
        const [event] = await stack.auditFor(res.headers["x-request-id"] as string);
        expect(event).toMatchObject({
          decision: "allow",
          reason: "allowed",
          credential: "api-key",
          keyId: id,
          tenantId: acme.id,
        });
      }
      expect(globex.upstream.requests.length).toBe(globexContacts);
    });

    it("accepts a key on its own tenant's hostname, and passes an app's own bearer token through there", async () => {
      const { id, key } = await createKey("acme");
      const res = await stack.request(acme.host, "/", { headers: { "x-api-key": key } });
      expect(res.status).toBe(200);
      const seen = acme.upstream.requests.at(-1)!;
      expect(seen.headers["x-tenant-auth"]).toBe("api-key");
      expect(seen.headers["x-tenant-key-id"]).toBe(id);
      expect(seen.headers["x-api-key"]).toBeUndefined();
      // Not a Portcullis key: the tenant app's own credential, forwarded untouched.
      const own = await stack.request(acme.host, "/", { headers: { authorization: "Bearer app-jwt.abc.def" } });
      expect(own.status).toBe(200);
      expect(acme.upstream.requests.at(-1)!.headers.authorization).toBe("Bearer app-jwt.abc.def");
      expect(acme.upstream.requests.at(-1)!.headers["x-tenant-auth"]).toBe("hostname");
    });

    it("answers every invalid key — missing, malformed, bad checksum, unknown, expired, revoked, another tenant's — with one byte-identical 401", async () => {
      const good = await createKey("acme");
      const revoked = await createKey("acme");
      const expiring = await createKey("acme", { expiresAt: new Date(Date.now() + 1_500).toISOString() });
      const other = await createKey("globex");
      expect((await stack.admin("DELETE", `/v1/tenants/acme/keys/${revoked.id}`)).status).toBe(204);
      await stack.cp.publisher.flush();
      const last = good.key.at(-1) === "A" ? "B" : "A";
      const badChecksum = good.key.slice(0, -1) + last;
      const typo = `${good.key.slice(0, 10)}${good.key[10] === "x" ? "y" : "x"}${good.key.slice(11)}`;
      // Wait out the expiring key (created valid: the API refuses a past expiry).
      await eventually(
        async () => (await stack.request(API, "/", { headers: { "x-api-key": expiring.key } })).status === 401,
        5_000,
        50,
      );

      const cases: { name: string; host: string; headers: Record<string, string>; reason: string }[] = [
        { name: "missing", host: API, headers: {}, reason: "key_missing" },
        { name: "malformed", host: API, headers: { authorization: "Bearer pck_short" }, reason: "key_malformed" },
        { name: "not a key", host: API, headers: { authorization: "Basic dXNlcjpwYXNz" }, reason: "key_malformed" },
        { name: "malformed header", host: acme.host, headers: { "x-api-key": "hello" }, reason: "key_malformed" },
        { name: "bad checksum", host: API, headers: { "x-api-key": badChecksum }, reason: "key_malformed" },
        { name: "typo", host: API, headers: { authorization: `Bearer ${typo}` }, reason: "key_malformed" },
        { name: "unknown", host: API, headers: { authorization: `Bearer ${generateApiKey().key}` }, reason: "key_unknown" },
        {
          name: "unknown on tenant host",
          host: acme.host,
          headers: { "x-api-key": generateApiKey().key },
          reason: "key_unknown",
        },
        { name: "expired", host: API, headers: { "x-api-key": expiring.key }, reason: "key_expired" },
        { name: "revoked", host: API, headers: { authorization: `Bearer ${revoked.key}` }, reason: "key_revoked" },
        { name: "revoked on tenant host", host: acme.host, headers: { "x-api-key": revoked.key }, reason: "key_revoked" },
        {
          name: "other tenant's (Bearer)",
          host: acme.host,
          headers: { authorization: `Bearer ${other.key}` },
          reason: "key_other_tenant",
        },
        { name: "other tenant's (X-API-Key)", host: acme.host, headers: { "x-api-key": other.key }, reason: "key_other_tenant" },
      ];
      let reference: { body: string; headers: Record<string, unknown> } | null = null;
      for (const c of cases) {
        const { res } = await refused(c.host, { headers: c.headers }, { status: 401, reason: c.reason });
        const requestId = res.json().error.requestId as string;
        const body = res.text.replace(requestId, "<id>");
        const headers = {
          "content-type": res.headers["content-type"],
          "www-authenticate": res.headers["www-authenticate"],
          "cache-control": res.headers["cache-control"],
          "content-length": res.headers["content-length"],
        };
        if (reference === null) reference = { body, headers };
        expect(body, c.name).toBe(reference.body);
        expect(headers, c.name).toEqual(reference.headers);
      }
      expect(JSON.parse(reference!.body).error.code).toBe("invalid_api_key");
      // The valid key still works: the refusals above were about the keys, not the tenant.
      expect((await stack.request(API, "/", { headers: { "x-api-key": good.key } })).status).toBe(200);
    });

    it("refuses two different keys in one request, and the same key repeated in one header", async () => {
      const a = await createKey("acme");
      const b = await createKey("acme");
      await refused(
        API,
        { headers: { authorization: `Bearer ${a.key}`, "x-api-key": b.key } },
        { status: 400, reason: "ambiguous_credentials" },
      );
      await refused(acme.host, { headers: { "x-api-key": [a.key, b.key] } }, { status: 400, reason: "ambiguous_credentials" });
      // Raw bytes: two Authorization headers (a well-behaved client cannot send this).
      const contacts = stack.upstreamContacts;
      const out = await raw(
        stack.port,
        `GET / HTTP/1.1\r\nHost: ${API}\r\nAuthorization: Bearer ${a.key}\r\nAuthorization: Bearer ${b.key}\r\nConnection: close\r\n\r\n`,
      );
      expect(statuses(out)).toEqual([400]);
      expect(out).toContain('"code":"ambiguous_credentials"');
      expect(stack.upstreamContacts).toBe(contacts);
      // One key in both places is one credential.
      const same = await stack.request(API, "/", { headers: { authorization: `Bearer ${a.key}`, "x-api-key": a.key } });
      expect(same.status).toBe(200);
      expect(acme.upstream.requests.at(-1)!.headers["x-api-key"]).toBeUndefined();
    });

    it("refuses a key in the query string, plain or percent-encoded, and keeps it out of the audit trail", async () => {
      const { key } = await createKey("acme");
      const { event } = await refused(API, {}, { status: 400, reason: "key_in_query", path: `/orders?api_key=${key}` });
      expect(event.path).toBe("/orders");
      expect(JSON.stringify(event)).not.toContain(key);
      await refused(
        acme.host,
        { headers: { "x-api-key": key } },
        { status: 400, reason: "key_in_query", path: `/?k=${encodeURIComponent(key).replace("_", "%5F")}` },
      );
      await refused(acme.host, {}, { status: 400, reason: "key_in_query", path: `/?k=pck%5f${key.slice(4)}` });
    });

    it("refuses a tenant's keys when features.apiAccess is false (within 1 s), and accepts them again when it is turned back on", async () => {
      const { key } = await createKey("globex");
      expect((await stack.request(API, "/", { headers: { "x-api-key": key } })).status).toBe(200);
      expect((await stack.admin("PATCH", "/v1/tenants/globex", { features: { apiAccess: false } })).status).toBe(200);
      await propagatesWithin(
        async () => (await stack.request(API, "/", { headers: { "x-api-key": key } })).status === 403,
        1_000,
      );
      const { res } = await refused(API, { headers: { "x-api-key": key } }, { status: 403, reason: "api_access_disabled" });
      expect(res.json().error.code).toBe("api_access_disabled");
      await refused(globex.host, { headers: { authorization: `Bearer ${key}` } }, { status: 403, reason: "api_access_disabled" });
      // The tenant's hostname still serves its users.
      expect((await stack.request(globex.host)).status).toBe(200);
      expect((await stack.admin("PATCH", "/v1/tenants/globex", { features: { apiAccess: true } })).status).toBe(200);
      await propagatesWithin(
        async () => (await stack.request(API, "/", { headers: { "x-api-key": key } })).status === 200,
        1_000,
      );
    });

    it("refuses a key whose tenant has no database binding (503)", async () => {
      await stack.tenant("nobind", { bind: false });
      const { key } = await createKey("nobind");
      const { res } = await refused(API, { headers: { "x-api-key": key } }, { status: 503, reason: "binding_missing" });
      expect(res.json().error.code).toBe("tenant_unavailable");
    });

    it("stops a key within 1 s when it is revoked, expires, or its tenant is suspended or deleted", async () => {
      const victim = await stack.tenant("victim", { plan: "enterprise" });
      const revoke = await createKey("acme");
      const expire = await createKey("acme", { expiresAt: new Date(Date.now() + 4_000).toISOString() });
      const suspend = await createKey("victim");
      for (const k of [revoke, expire, suspend]) {
        expect((await stack.request(API, "/", { headers: { "x-api-key": k.key } })).status).toBe(200);
      }

      expect((await stack.admin("DELETE", `/v1/tenants/acme/keys/${revoke.id}`)).status).toBe(204);
      expect(
        await propagatesWithin(
          async () => (await stack.request(API, "/", { headers: { "x-api-key": revoke.key } })).status === 401,
          1_000,
        ),
      ).toBeLessThan(1_000);
      await refused(API, { headers: { "x-api-key": revoke.key } }, { status: 401, reason: "key_revoked" });

      expect((await stack.admin("PATCH", "/v1/tenants/victim", { status: "suspended" })).status).toBe(200);
      await propagatesWithin(
        async () => (await stack.request(API, "/", { headers: { "x-api-key": suspend.key } })).status === 403,
        1_000,
      );
      await refused(API, { headers: { "x-api-key": suspend.key } }, { status: 403, reason: "tenant_suspended" });
      // Requests sent before the change arrived may have reached it; none after.
      const reached = victim.upstream.requests.length;

      expect((await stack.admin("DELETE", "/v1/tenants/victim")).status).toBe(204);
      await propagatesWithin(
        async () => (await stack.request(API, "/", { headers: { "x-api-key": suspend.key } })).status === 401,
        1_000,
      );
      await refused(API, { headers: { "x-api-key": suspend.key } }, { status: 401, reason: "key_unknown" });
      expect(victim.upstream.requests.length).toBe(reached);

      // Expiry: the router's own clock, no event needed: no request sent once the key
      // has expired is accepted.
      const expiresAt = Date.parse(
        (await stack.admin("GET", "/v1/tenants/acme/keys")).json().keys.find((k: { id: string }) => k.id === expire.id).expiresAt,
      );
      const samples = await sampleUntil(expiresAt, () => stack.request(API, "/", { headers: { "x-api-key": expire.key } }));
      const after = samples.filter((x) => x.sentAt >= expiresAt);
      expect(after.length).toBeGreaterThan(0);
      expect(after.filter((x) => x.status !== 401)).toEqual([]);
      expect(samples.every((x) => x.status === 200 || x.status === 401)).toBe(true);
      await refused(API, { headers: { "x-api-key": expire.key } }, { status: 401, reason: "key_expired" });
      const listed = (await stack.admin("GET", "/v1/tenants/acme/keys")).json().keys;
      expect(listed.find((k: { id: string }) => k.id === expire.id).status).toBe("expired");
      expect(listed.find((k: { id: string }) => k.id === revoke.id).status).toBe("revoked");
    });

    it("keeps the last-used time of a key without a write per request", async () => {
      const used = await createKey("acme");
      const unused = await createKey("acme");
      const before = Date.now();
      for (let i = 0; i < 20; i++) {
        expect((await stack.request(API, "/", { headers: { "x-api-key": used.key } })).status).toBe(200);
      }
      let listed: { id: string; lastUsedAt: string | null }[] = [];
      await eventually(
        async () => {
          listed = (await stack.admin("GET", "/v1/tenants/acme/keys")).json().keys;
          return listed.find((k) => k.id === used.id)?.lastUsedAt != null;
        },
        5_000,
        50,
      );
      const lastUsed = Date.parse(listed.find((k) => k.id === used.id)!.lastUsedAt as string);
      expect(lastUsed).toBeGreaterThanOrEqual(before - 1_000);
      expect(listed.find((k) => k.id === unused.id)!.lastUsedAt).toBeNull();
    });
  });
}
