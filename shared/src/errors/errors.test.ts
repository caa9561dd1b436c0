import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ADMIN_ERRORS, REFUSALS, refusalBody } from "./index.ts";

const doc = readFileSync(new URL("../../../docs/errors.md", import.meta.url), "utf8");

describe("error registry", () => {
  it("documents every refusal reason and admin error code in docs/errors.md", () => {
    const missing = [...Object.keys(REFUSALS), ...Object.keys(ADMIN_ERRORS)].filter((code) => !doc.includes(`\`${code}\``));
    expect(missing).toEqual([]);
  });

  it("builds valid JSON bodies for every reason", () => {
    for (const reason of Object.keys(REFUSALS) as (keyof typeof REFUSALS)[]) {
      const body = JSON.parse(refusalBody(reason, "req_1"));
      expect(body.error).toEqual({ code: REFUSALS[reason].code, message: REFUSALS[reason].message, requestId: "req_1" });
    }
  });

  it("gives every invalid-key reason the same public answer", () => {
    const keyReasons = ["key_missing", "key_malformed", "key_unknown", "key_expired", "key_revoked", "key_other_tenant"] as const;
    const bodies = new Set(keyReasons.map((r) => refusalBody(r, "req_x")));
    const statuses = new Set(keyReasons.map((r) => REFUSALS[r].status));
    expect(bodies.size).toBe(1);
    expect([...statuses]).toEqual([401]);
  });
});
