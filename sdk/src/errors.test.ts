/** Every code the SDK answers, throws or reports is documented in its README (a table row per code). */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CONTEXT_REFUSALS, JOB_REFUSALS, USAGE_ERRORS } from "./errors.ts";
import type { RlsProblemCode } from "./db/rls.ts";
import type { ViolationKind } from "./testing/route-guard.ts";

const README = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const RLS: Record<RlsProblemCode, true> = {
  rls_disabled: true,
  rls_not_forced: true,
  no_tenant_policy: true,
  role_bypasses_rls: true,
};
const GUARD: Record<ViolationKind, true> = {
  leak_in_list: true,
  leak_by_id: true,
  forbidden_not_404: true,
  unexpected_status: true,
  no_rows: true,
  own_row_unreadable: true,
};

describe("the SDK's error registry", () => {
  it.each([
    ["refusal", Object.keys(CONTEXT_REFUSALS)],
    ["job refusal", Object.keys(JOB_REFUSALS)],
    ["usage error", Object.keys(USAGE_ERRORS)],
    ["RLS problem", Object.keys(RLS)],
    ["guard violation", Object.keys(GUARD)],
  ])("documents every %s code in sdk/README.md", (_kind, codes) => {
    const missing = codes.filter((code) => !new RegExp(`^\\| \`${code}\` +\\|`, "m").test(README));
    expect(missing).toEqual([]);
  });
});
