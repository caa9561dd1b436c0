import { describe, expect, it } from "vitest";
import { contextSigner, signContext, verifyTenantContext } from "./context.ts";

describe("contextSigner", () => {
  it("signs exactly as signContext does, and the signature verifies", () => {
    const secret = "a-context-signing-secret-0123";
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
    const at = 1_700_000_000_123;
    const signature = contextSigner(secret)(values, at);
    expect(signature).toBe(signContext(values, secret, at));
    expect(verifyTenantContext({ ...values, "x-tenant-signature": signature }, secret, { now: at }).ok).toBe(true);
    expect(contextSigner("another-secret-0123456789")(values, at)).not.toBe(signature);
  });
});
