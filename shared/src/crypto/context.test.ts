import { createHmac, createSecretKey } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type ContextKeyState,
  contextKeysFrom,
  contextKeyToken,
  PreparedHmacKey,
  contextSigner,
  deriveContextKey,
  signContext,
  verifyTenantContext,
} from "./context.ts";

const MASTER = "a-context-signing-secret-0123";
const values = {
  "x-tenant-id": "ten_1",
  "x-tenant-slug": "acme",
  "x-tenant-db": "pg-acme:5432/acme",
  "x-tenant-auth": "hostname",
  "x-request-id": "req_1",
  "x-forwarded-for": "127.0.0.1",
  "x-forwarded-host": "acme.localhost",
  "x-forwarded-proto": "http",
};
const request = { method: "GET", host: "acme.localhost", target: "/orders?page=2" };
const at = 1_700_000_000_123;
const V1: ContextKeyState = { version: 1, previous: null };

/** The request as the upstream receives it, with the router's signature. */
function received(signature: string, over: Partial<typeof request> = {}, headers: Record<string, string> = {}) {
  const r = { ...request, ...over };
  return { method: r.method, url: r.target, headers: { ...values, host: r.host, "x-tenant-signature": signature, ...headers } };
}

describe("per-tenant context keys", () => {
  it("derives one key per tenant and version, and the router's signer signs as signContext does", () => {
    const a1 = deriveContextKey(MASTER, "ten_1", 1);
    expect(a1).toHaveLength(32);
    expect(deriveContextKey(MASTER, "ten_1", 1).equals(a1)).toBe(true);
    expect(deriveContextKey(MASTER, "ten_2", 1).equals(a1)).toBe(false);
    expect(deriveContextKey(MASTER, "ten_1", 2).equals(a1)).toBe(false);
    expect(deriveContextKey("another-master-secret-0123", "ten_1", 1).equals(a1)).toBe(false);
    const signature = contextSigner(MASTER)("ten_1", V1, values, request, at);
    expect(signature).toBe(signContext(values, request, [{ version: 1, key: createSecretKey(a1) }], at));
    expect(signature).toMatch(/^t=\d+,k=1,s=[0-9a-f]{64}$/);
  });

  it("an app verifies with its own key only: another tenant's key, or another master, does not verify", () => {
    const signature = contextSigner(MASTER)("ten_1", V1, values, request, at);
    const own = contextKeyToken(MASTER, "ten_1", 1);
    expect(own).toMatch(/^pctx_1_[A-Za-z0-9_-]{43}$/);
    expect(verifyTenantContext(received(signature), own, { now: at })).toMatchObject({ ok: true, keyVersion: 1 });
    expect(verifyTenantContext(received(signature), contextKeyToken(MASTER, "ten_2", 1), { now: at })).toEqual({
      ok: false,
      code: "bad_signature",
    });
    expect(verifyTenantContext(received(signature), contextKeysFrom("another-master-0123456789"), { now: at }).ok).toBe(false);
    // A key of another version is not tried at all.
    expect(verifyTenantContext(received(signature), contextKeyToken(MASTER, "ten_1", 2), { now: at })).toEqual({
      ok: false,
      code: "unknown_key",
    });
  });

  it("a tenant's app that can verify cannot sign for another tenant: its key makes no signature the other's app accepts", () => {
    const forged = signContext(
      { ...values, "x-tenant-id": "ten_2", "x-tenant-slug": "globex" },
      request,
      [{ version: 1, key: deriveContextKey(MASTER, "ten_1", 1) }],
      at,
    );
    const r = received(forged, {}, { "x-tenant-id": "ten_2", "x-tenant-slug": "globex" });
    expect(verifyTenantContext(r, contextKeyToken(MASTER, "ten_2", 1), { now: at }).ok).toBe(false);
    expect(verifyTenantContext(r, contextKeysFrom(MASTER), { now: at }).ok).toBe(false);
  });

  it("a captured header set does not verify on another method, host, path or query", () => {
    const signature = contextSigner(MASTER)("ten_1", V1, values, request, at);
    const keys = contextKeysFrom(MASTER);
    expect(verifyTenantContext(received(signature), keys, { now: at }).ok).toBe(true);
    for (const over of [
      { method: "POST" },
      { host: "globex.localhost" },
      { target: "/admin?page=2" },
      { target: "/orders?page=3" },
      { target: "/orders" },
    ]) {
      expect(verifyTenantContext(received(signature, over), keys, { now: at }), JSON.stringify(over)).toEqual({
        ok: false,
        code: "bad_signature",
      });
    }
    // A Web Request's absolute URL is read as its target.
    const web = new Request("http://acme.localhost/orders?page=2", { headers: { ...values, "x-tenant-signature": signature } });
    // Request headers drop `host` (forbidden header): pass it as the upstream saw it.
    const headers = new Headers(web.headers);
    headers.set("host", "acme.localhost");
    expect(verifyTenantContext({ method: web.method, url: web.url, headers }, keys, { now: at }).ok).toBe(true);
  });

  it("during a rotation's overlap both keys sign, so an app holding either verifies; after it, only the new one", () => {
    const sign = contextSigner(MASTER);
    const rotating: ContextKeyState = { version: 2, previous: { version: 1, until: at + 1_000 } };
    const during = sign("ten_1", rotating, values, request, at);
    expect(during).toMatch(/^t=\d+,k=2,s=[0-9a-f]{64},k=1,s=[0-9a-f]{64}$/);
    expect(verifyTenantContext(received(during), contextKeyToken(MASTER, "ten_1", 1), { now: at })).toMatchObject({
      ok: true,
      keyVersion: 1,
    });
    expect(verifyTenantContext(received(during), contextKeyToken(MASTER, "ten_1", 2), { now: at })).toMatchObject({
      ok: true,
      keyVersion: 2,
    });
    const after = sign("ten_1", rotating, values, request, at + 1_000);
    expect(after).toMatch(/^t=\d+,k=2,s=[0-9a-f]{64}$/);
    expect(verifyTenantContext(received(after), contextKeyToken(MASTER, "ten_1", 1), { now: at + 1_000 }).ok).toBe(false);
  });

  it("refuses a missing, malformed, stale or tampered signature, and repeated context headers", () => {
    const keys = contextKeysFrom(MASTER);
    const signature = contextSigner(MASTER)("ten_1", V1, values, request, at);
    const { "x-tenant-signature": _, ...unsigned } = received(signature).headers;
    expect(verifyTenantContext({ ...received(signature), headers: unsigned }, keys).ok).toBe(false);
    expect(verifyTenantContext(received("t=1,v1=abc"), keys, { now: at })).toEqual({ ok: false, code: "malformed_signature" });
    expect(verifyTenantContext(received(signature), keys, { now: at + 300_001 })).toEqual({ ok: false, code: "stale_signature" });
    expect(verifyTenantContext(received(signature, {}, { "x-tenant-db": "pg-other:5432/x" }), keys, { now: at }).ok).toBe(false);
    const repeated = received(signature);
    (repeated.headers as Record<string, string | string[]>)["x-tenant-id"] = ["ten_1", "ten_1"];
    expect(verifyTenantContext(repeated, keys, { now: at }).ok).toBe(false);
  });

  it("property: any change of method, host or target breaks the signature", () => {
    const sign = contextSigner(MASTER);
    const token = fc.stringMatching(/^[A-Za-z0-9/?=&._~-]{1,40}$/);
    fc.assert(
      fc.property(token, token, (a, b) => {
        const r1 = { ...request, target: `/${a}` };
        const signature = sign("ten_1", V1, values, r1, at);
        const ok = verifyTenantContext(received(signature, { target: `/${b}` }), contextKeysFrom(MASTER), { now: at }).ok;
        return ok === (a === b);
      }),
      { numRuns: 300 },
    );
  });
});

describe("the prepared HMAC key", () => {
  it("equals createHmac for any key of up to one block and any text, long ones included", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 64 }),
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.string({ unit: "grapheme", maxLength: 300 }),
          fc.string({ minLength: 3_000, maxLength: 6_000 }),
        ),
        (raw, text) => {
          const key = Buffer.from(raw);
          const prepared = new PreparedHmacKey(key);
          const expected = createHmac("sha256", key).update(text).digest("hex");
          // Twice: the per-key buffers are reused between signatures.
          expect(prepared.mac(text)).toBe(expected);
          expect(prepared.mac(text)).toBe(expected);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("a full signer lets go of its longest-held tenant only, and still signs for each", () => {
    const sign = contextSigner(MASTER, 2);
    const keys = contextKeysFrom(MASTER);
    for (const tenant of ["ten_1", "ten_2", "ten_3", "ten_1"]) {
      const signature = sign(tenant, V1, { ...values, "x-tenant-id": tenant }, request, at);
      expect(verifyTenantContext(received(signature, {}, { "x-tenant-id": tenant }), keys, { now: at }).ok).toBe(true);
      expect(sign.held).toBeGreaterThan(0);
    }
    // Emptied when full, it would hold one tenant now: it holds the bound.
    expect(sign.held).toBe(2);
  });

  it("refuses a key longer than a block (HMAC would hash it first)", () => {
    expect(() => new PreparedHmacKey(Buffer.alloc(65))).toThrow();
  });
});
