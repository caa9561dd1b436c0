/**
 * Users and sessions end to end (real Redis and Postgres, then the embedded defaults):
 * a session opens its own tenant only, forged / expired / revoked tokens are refused,
 * the token never reaches the app, and an email belongs to one user platform-wide.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signSession, contextKeysFrom, verifyTenantContext } from "@portcullis/shared";
import { type Backend, propagatesWithin, SECRETS, startTestStack, type TestStack } from "../helpers/stack.ts";

const COOKIE = "portcullis_session";

for (const backend of ["real", "embedded"] as Backend[]) {
  describe(`users and sessions (${backend})`, () => {
    let stack: TestStack;
    let acme: Awaited<ReturnType<TestStack["tenant"]>>;
    let globex: Awaited<ReturnType<TestStack["tenant"]>>;
    let userId: string;

    async function session(tenant = "acme", user = userId) {
      const res = await stack.admin("POST", `/v1/tenants/${tenant}/users/${user}/sessions`);
      expect(res.status).toBe(201);
      await stack.cp.publisher.flush();
      return res.json() as { id: string; token: string; cookie: string; expiresAt: string };
    }

    async function refused(host: string, cookie: string, reason: string, router = stack.router) {
      const contacts = stack.upstreamContacts;
      const res = await stack.request(host, "/dashboard", { headers: { cookie } }, router);
      expect(res.status, reason).toBe(401);
      expect(res.json().error.code).toBe("invalid_session");
      const events = await stack.auditAnywhere(res.json().error.requestId);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ decision: "refuse", reason, credential: "session" });
      expect(stack.upstreamContacts, "no upstream contact").toBe(contacts);
      return res;
    }

    beforeAll(async () => {
      stack = await startTestStack({ backend });
      acme = await stack.tenant("acme");
      globex = await stack.tenant("globex");
      const user = await stack.admin("POST", "/v1/tenants/acme/users", { email: "Ann@Example.com" });
      expect(user.status).toBe(201);
      expect(user.json()).toMatchObject({ tenantId: acme.id, email: "ann@example.com" });
      userId = user.json().id;
    });
    afterAll(async () => {
      await stack?.close();
    });

    it("an email belongs to one user across the whole platform (409, case-insensitive)", async () => {
      for (const [tenant, email] of [
        ["globex", "ann@example.com"],
        ["globex", "ANN@example.COM"],
        ["acme", "ann@example.com"],
      ] as const) {
        const res = await stack.admin("POST", `/v1/tenants/${tenant}/users`, { email });
        expect(res.status, `${tenant} ${email}`).toBe(409);
        expect(res.json().error.code).toBe("email_taken");
      }
      expect((await stack.admin("POST", "/v1/tenants/globex/users", { email: "bob@example.com" })).status).toBe(201);
      // A session is issued only for a user of that tenant.
      expect((await stack.admin("POST", `/v1/tenants/globex/users/${userId}/sessions`)).status).toBe(404);
    });

    it("a session opens its own tenant: x-user-id forwarded, x-tenant-auth=session, the token kept at the edge, other cookies passed", async () => {
      const s = await session();
      expect(s.cookie).toBe(`${COOKIE}=${s.token}`);
      const res = await stack.request(acme.host, "/dashboard", { headers: { cookie: `theme=dark; ${s.cookie}; cart=42` } });
      expect(res.status).toBe(200);
      const seen = acme.upstream.requests.at(-1)!;
      expect(seen.headers["x-user-id"]).toBe(userId);
      expect(seen.headers["x-tenant-auth"]).toBe("session");
      expect(seen.headers.cookie).toBe("theme=dark; cart=42");
      expect(seen.rawHeaders.join("\n")).not.toContain(s.token.split(".")[1]);
      expect(seen.rawHeaders.join("\n")).not.toContain(COOKIE);
      const verified = verifyTenantContext(seen, contextKeysFrom(SECRETS.CONTEXT_SIGNING_SECRET));
      expect(verified.ok && verified.context["x-user-id"]).toBe(userId);
      const [event] = await stack.auditAnywhere(res.headers["x-request-id"] as string);
      expect(event).toMatchObject({ decision: "allow", credential: "session", userId, tenantId: acme.id });
      // The session cookie alone: no Cookie header at all reaches the app.
      await stack.request(acme.host, "/", { headers: { cookie: s.cookie } });
      expect(acme.upstream.requests.at(-1)!.headers.cookie).toBeUndefined();
    });

    it("refuses a session on another tenant's hostname, and alongside another tenant's key", async () => {
      const s = await session();
      await refused(globex.host, s.cookie, "session_other_tenant");
      const key = await stack.admin("POST", "/v1/tenants/globex/keys", {});
      await stack.cp.publisher.flush();
      const contacts = stack.upstreamContacts;
      const res = await stack.request("api.localhost", "/", { headers: { cookie: s.cookie, "x-api-key": key.json().key } });
      expect(res.status).toBe(401);
      const [event] = await stack.auditAnywhere(res.json().error.requestId);
      expect(event?.reason).toBe("session_other_tenant");
      expect(stack.upstreamContacts).toBe(contacts);
    });

    it("refuses forged tokens: changed claims, another secret, garbage, two session cookies", async () => {
      const s = await session();
      const [payload, mac] = s.token.split(".") as [string, string];
      const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
      // Claims rewritten to name globex, original MAC kept.
      const rewritten = `${Buffer.from(JSON.stringify({ ...claims, tid: globex.id })).toString("base64url")}.${mac}`;
      await refused(globex.host, `${COOKIE}=${rewritten}`, "session_invalid");
      await refused(
        acme.host,
        `${COOKIE}=${Buffer.from(JSON.stringify({ ...claims, uid: "usr_other" })).toString("base64url")}.${mac}`,
        "session_invalid",
      );
      // Well-formed claims, signed with a secret that is not the platform's.
      const otherSecret = signSession(
        { sid: claims.sid, tid: acme.id, uid: userId, exp: claims.exp },
        "not-the-session-secret-0123",
      );
      await refused(acme.host, `${COOKIE}=${otherSecret}`, "session_invalid");
      // A flipped MAC character.
      const flipped = `${payload}.${mac[0] === "A" ? "B" : "A"}${mac.slice(1)}`;
      await refused(acme.host, `${COOKIE}=${flipped}`, "session_invalid");
      await refused(acme.host, `${COOKIE}=garbage`, "session_invalid");
      // A valid MAC over an invented session id: signed claims alone are not enough.
      const invented = signSession({ sid: "ses_invented", tid: acme.id, uid: userId, exp: claims.exp }, SECRETS.SESSION_SECRET);
      await refused(acme.host, `${COOKIE}=${invented}`, "session_invalid");
      // Two session cookies are ambiguous, even when one is valid.
      await refused(acme.host, `${s.cookie}; ${COOKIE}=${flipped}`, "session_invalid");
      expect((await stack.request(acme.host, "/", { headers: { cookie: s.cookie } })).status).toBe(200);
    });

    it("refuses an expired session: past the token's expiry on the router's clock, or a token whose expiry has passed", async () => {
      const s = await session();
      const ttlMs = Date.parse(s.expiresAt) - Date.now();
      // A router whose clock is past the session's expiry.
      const later = await stack.addRouter({}, { now: () => Date.now() + ttlMs + 1_000 });
      await refused(acme.host, s.cookie, "session_invalid", later);
      expect((await stack.request(acme.host, "/", { headers: { cookie: s.cookie } })).status).toBe(200);
      // A correctly signed token for a real session, whose expiry has passed.
      const claims = JSON.parse(Buffer.from(s.token.split(".")[0] as string, "base64url").toString());
      const past = signSession(
        { sid: claims.sid, tid: acme.id, uid: userId, exp: Math.floor(Date.now() / 1000) - 1 },
        SECRETS.SESSION_SECRET,
      );
      await refused(acme.host, `${COOKIE}=${past}`, "session_invalid");
    });

    it("stops a revoked session within 1 s on every router", async () => {
      const second = await stack.addRouter();
      const s = await session();
      for (const r of [stack.routers[0]!, second]) {
        expect((await stack.request(acme.host, "/", { headers: { cookie: s.cookie } }, r)).status).toBe(200);
      }
      const revoke = await stack.admin("DELETE", `/v1/tenants/acme/sessions/${s.id}`);
      expect(revoke.status).toBe(204);
      for (const r of [stack.routers[0]!, second]) {
        const elapsed = await propagatesWithin(
          async () => (await stack.request(acme.host, "/", { headers: { cookie: s.cookie } }, r)).status === 401,
          1_000,
        );
        expect(elapsed).toBeLessThan(1_000);
        await refused(acme.host, s.cookie, "session_invalid", r);
      }
      // Another tenant cannot revoke it (404), and revoking is idempotent for the owner.
      expect((await stack.admin("DELETE", `/v1/tenants/globex/sessions/${s.id}`)).status).toBe(404);
    });
  });
}
