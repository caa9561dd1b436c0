/**
 * Per-tenant context keys, over real sockets (real Postgres, real Redis): each
 * tenant's app is handed its own key by the admin API and verifies with it alone; a
 * compromised app of one tenant cannot forge another tenant's context; a captured
 * header set does not verify on another path or host; rotation keeps both keys valid
 * during the overlap and only the new one after it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONTEXT_FIELDS, deriveContextKey, signContext, verifyTenantContext } from "@portcullis/shared";
import { type EchoUpstream, startEchoUpstream } from "../../deploy/local/demo-upstream.ts";
import { send } from "../helpers/http.ts";
import { propagatesWithin, startTestStack, type TestStack } from "../helpers/stack.ts";

interface KeyView {
  tenantId: string;
  version: number;
  key: string;
  previous: { version: number; key: string; until: string } | null;
}

describe("per-tenant context keys (real Postgres, real Redis)", () => {
  let stack: TestStack;
  let acme: Awaited<ReturnType<TestStack["tenant"]>>;
  let globex: Awaited<ReturnType<TestStack["tenant"]>>;
  /** Each tenant's own app, verifying with the key the admin API handed it. */
  const apps: Record<string, { upstream: EchoUpstream; keys: string[] }> = {};

  async function keyOf(slug: string): Promise<KeyView> {
    const res = await stack.admin("GET", `/v1/tenants/${slug}/context-key`);
    expect(res.status).toBe(200);
    expect(res.headers["cache-control"]).toBe("no-store");
    return res.json();
  }

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real" });
    acme = await stack.tenant("acme");
    globex = await stack.tenant("globex");
    for (const t of [acme, globex]) {
      const own = await keyOf(t.slug);
      // The app holds a key list the test can change (as an operator would on rotation).
      const keys = [own.key];
      const app = { upstream: await startEchoUpstream({ name: `${t.slug}-own-app`, keys }), keys };
      apps[t.slug] = app;
      expect((await stack.admin("PUT", `/v1/tenants/${t.slug}/upstreams`, { urls: [app.upstream.url] })).status).toBe(200);
    }
    await stack.cp.publisher.flush();
    for (const r of stack.routers) r.resolver.clear();
  });
  afterAll(async () => {
    for (const a of Object.values(apps)) await a.upstream.close();
    await stack?.close();
  });

  it("hands each tenant its own key, and each app verifies its own tenant's requests with it alone", async () => {
    const a = await keyOf("acme");
    const g = await keyOf("globex");
    expect(a.version).toBe(1);
    expect(a.key).toMatch(/^pctx_1_[A-Za-z0-9_-]{43}$/);
    expect(a.key).not.toBe(g.key);
    expect(a.tenantId).toBe(acme.id);
    for (const t of [acme, globex]) {
      const res = await stack.request(t.host, "/orders?page=2");
      expect(res.status).toBe(200);
      expect(res.json().app).toBe(`${t.slug}-own-app`);
      expect(res.json().signatureValid).toBe(true);
    }
    const seen = apps.acme?.upstream.requests.at(-1);
    expect(seen).toBeDefined();
    if (!seen) return;
    // Globex's key does not verify Acme's context.
    expect(verifyTenantContext(seen, g.key).ok).toBe(false);
    expect(verifyTenantContext(seen, a.key).ok).toBe(true);
  });

  it("a compromised app of one tenant cannot forge another tenant's context", async () => {
    // Acme's app holds Acme's key and knows what a context looks like: it signs
    // Globex's context with it and sends it straight to Globex's app.
    const stolen = Buffer.from((await keyOf("acme")).key.slice("pctx_1_".length), "base64url");
    expect(stolen.equals(deriveContextKey(stack.secrets.CONTEXT_SIGNING_SECRET, acme.id, 1))).toBe(true);
    const context = {
      "x-tenant-id": globex.id,
      "x-tenant-slug": "globex",
      "x-tenant-db": "pg-globex.internal:5432/globex",
      "x-tenant-auth": "hostname",
      "x-request-id": "req_forged",
      "x-forwarded-for": "10.9.9.9",
      "x-forwarded-host": globex.host,
      "x-forwarded-proto": "http",
    };
    const signature = signContext(
      context,
      { method: "GET", host: globex.host, target: "/admin" },
      [{ version: 1, key: stolen }],
      Date.now(),
    );
    const upstream = apps.globex?.upstream as EchoUpstream;
    const res = await send(upstream.port, globex.host, "/admin", { headers: { ...context, "x-tenant-signature": signature } });
    expect(res.json().signatureValid).toBe(false);
  });

  it("a captured header set does not verify on another path, method or host", async () => {
    const upstream = apps.acme?.upstream as EchoUpstream;
    const res = await stack.request(acme.host, "/reports?id=1");
    expect(res.json().signatureValid).toBe(true);
    const seen = upstream.requests.at(-1);
    if (!seen) throw new Error("no request seen");
    const captured: Record<string, string> = {};
    for (const name of [...CONTEXT_FIELDS, "x-tenant-signature"]) {
      const v = seen.headers[name];
      if (typeof v === "string") captured[name] = v;
    }
    // The same request again, straight to the app: verifies (within the replay window).
    expect((await send(upstream.port, acme.host, "/reports?id=1", { headers: captured })).json().signatureValid).toBe(true);
    expect((await send(upstream.port, acme.host, "/reports?id=2", { headers: captured })).json().signatureValid).toBe(false);
    expect((await send(upstream.port, acme.host, "/admin", { headers: captured })).json().signatureValid).toBe(false);
    expect(
      (await send(upstream.port, acme.host, "/reports?id=1", { method: "DELETE", headers: captured })).json().signatureValid,
    ).toBe(false);
    expect((await send(upstream.port, "other.localhost", "/reports?id=1", { headers: captured })).json().signatureValid).toBe(
      false,
    );
  });

  it("rotation: both keys verify during the overlap, only the new one after an immediate rotation", async () => {
    const app = apps.acme as { upstream: EchoUpstream; keys: string[] };
    const before = await keyOf("acme");
    const rotated = await stack.admin("POST", "/v1/tenants/acme/context-key/rotate", { overlapSeconds: 600 });
    expect(rotated.status).toBe(200);
    const v2: KeyView = rotated.json();
    expect(v2.version).toBe(before.version + 1);
    expect(v2.previous?.version).toBe(before.version);
    expect(v2.previous?.key).toBe(before.key);
    expect(await keyOf("acme")).toEqual(v2);

    // Routers sign with both keys within a second: the app still holding only the old
    // key verifies, and one given only the new key verifies too.
    await propagatesWithin(async () => {
      const seen = await lastSeen(stack, acme.host, app.upstream);
      return /,k=\d+,s=[0-9a-f]{64},k=\d+,s=/.test(String(seen.headers["x-tenant-signature"]));
    });
    const seen = await lastSeen(stack, acme.host, app.upstream);
    expect(verifyTenantContext(seen, before.key)).toMatchObject({ ok: true, keyVersion: before.version });
    expect(verifyTenantContext(seen, v2.key)).toMatchObject({ ok: true, keyVersion: v2.version });

    // A leaked key: rotate with no overlap. The old keys stop verifying at once.
    const now = await stack.admin("POST", "/v1/tenants/acme/context-key/rotate", { overlapSeconds: 0 });
    expect(now.status).toBe(200);
    const v3: KeyView = now.json();
    expect(v3.previous).toBeNull();
    await propagatesWithin(async () => {
      const s = await lastSeen(stack, acme.host, app.upstream);
      return verifyTenantContext(s, v3.key).ok;
    });
    const after = await lastSeen(stack, acme.host, app.upstream);
    expect(verifyTenantContext(after, v2.key).ok).toBe(false);
    expect(verifyTenantContext(after, before.key).ok).toBe(false);
    // The app given the new key verifies again through the router.
    app.keys.splice(0, app.keys.length, v3.key);
    expect((await stack.request(acme.host, "/")).json().signatureValid).toBe(true);
    // Globex's key was never touched.
    expect((await keyOf("globex")).version).toBe(1);
  });

  it("refuses rotation of an unknown tenant, a bad body, and a call without the admin token", async () => {
    expect((await stack.admin("POST", "/v1/tenants/nobody/context-key/rotate", {})).status).toBe(404);
    expect((await stack.admin("GET", "/v1/tenants/nobody/context-key")).status).toBe(404);
    const bad = await stack.admin("POST", "/v1/tenants/acme/context-key/rotate", { overlapSeconds: -1 });
    expect(bad.status).toBe(400);
    expect(bad.json().error.code).toBe("validation_failed");
    const extra = await stack.admin("POST", "/v1/tenants/acme/context-key/rotate", { overlapSeconds: 1, version: 9 });
    expect(extra.status).toBe(400);
    const anonymous = await send(stack.adminPort, "127.0.0.1", "/v1/tenants/acme/context-key");
    expect(anonymous.status).toBe(401);
  });
});

async function lastSeen(stack: TestStack, host: string, upstream: EchoUpstream) {
  const res = await stack.request(host, "/");
  expect(res.status).toBe(200);
  const seen = upstream.requests.at(-1);
  if (!seen) throw new Error("no request seen");
  return seen;
}
