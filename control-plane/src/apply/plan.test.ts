import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { type LiveState, planApply } from "./plan.ts";
import { normalizeTenantFile, parseTenantFile } from "./spec.ts";

const platform = { platformDomain: "example.net", apiHostname: "api.example.org" };

function file(yaml: string) {
  const parsed = parseTenantFile(yaml);
  if (!parsed.ok) throw new Error(parsed.issues.join("\n"));
  const n = normalizeTenantFile(parsed.file, platform);
  if (!n.ok) throw new Error(n.issues.join("\n"));
  return n.tenants;
}

const empty: LiveState = { tenants: [], hosts: [], bindings: [], upstreams: [] };
const live: LiveState = {
  tenants: [{ id: "ten_a", slug: "acme", name: "Acme", plan: "free" }],
  hosts: [
    { hostname: "acme.example.net", tenantSlug: "acme", kind: "platform", status: "verified" },
    { hostname: "shop.acme.com", tenantSlug: "acme", kind: "custom", status: "verified" },
  ],
  bindings: [{ tenantSlug: "acme", server: "pg-acme:5432", database: "acme" }],
  upstreams: [{ tenantSlug: "acme", urls: ["http://10.0.0.1:3000"] }],
};

describe("preflight plan", () => {
  it("finds duplicates in every spelling: case, trailing dot, port, Unicode and punycode", () => {
    const t = file(`
tenants:
  - {slug: a, name: A, hostnames: [Shop.Example.com, bücher.example], database: {server: "s1:5432", database: a}}
  - {slug: b, name: B, hostnames: ["shop.example.com.", "xn--bcher-kva.example"], database: {server: "s2:5432", database: b}}
  - {slug: c, name: C, hostnames: ["SHOP.EXAMPLE.COM:443", "BÜCHER.EXAMPLE."], database: {server: "s3:5432", database: c}}
`);
    const { conflicts } = planApply(t, empty);
    expect(conflicts.map((c) => [c.kind, c.subject, c.owners.map((o) => o.tenant)])).toEqual([
      ["duplicate_hostname", "shop.example.com", ["a", "b", "c"]],
      ["duplicate_hostname", "xn--bcher-kva.example", ["a", "b", "c"]],
    ]);
    expect(conflicts[0]!.message).toContain('tenant a (file, as "Shop.Example.com")');
    expect(conflicts[0]!.message).toContain('tenant c (file, as "SHOP.EXAMPLE.COM:443")');
  });

  it("finds a hostname owned live by another tenant, unless the file releases it", () => {
    const grab = file(`
tenants:
  - {slug: globex, name: G, hostnames: [shop.acme.com], database: {server: "pg-g:5432", database: g}}
`);
    const owned = planApply(grab, live).conflicts;
    expect(owned).toHaveLength(1);
    expect(owned[0]).toMatchObject({ kind: "hostname_owned", subject: "shop.acme.com" });
    expect(owned[0]!.message).toBe("hostname shop.acme.com: claimed by tenant globex (file) but owned by tenant acme (live)");

    const move = file(`
tenants:
  - {slug: acme, name: Acme, hostnames: []}
  - {slug: globex, name: G, hostnames: [shop.acme.com], database: {server: "pg-g:5432", database: g}}
`);
    const plan = planApply(move, live);
    expect(plan.conflicts).toEqual([]);
    expect(plan.changes).toContainEqual({ action: "remove_hostname", tenant: "acme", detail: "shop.acme.com" });
  });

  it("finds a database server bound to two tenants, in the file or live", () => {
    const both = file(`
tenants:
  - {slug: a, name: A, database: {server: "PG-1:5432", database: a}}
  - {slug: b, name: B, database: {server: "pg-1:5432", database: b}}
  - {slug: c, name: C, database: {server: "pg-acme:5432", database: c}}
`);
    const conflicts = planApply(both, live).conflicts;
    expect(conflicts.map((c) => [c.kind, c.subject, c.owners.map((o) => `${o.tenant}/${o.source}`)])).toEqual([
      ["server_shared", "pg-1:5432", ["a/file", "b/file"]],
      ["server_bound", "pg-acme:5432", ["c/file", "acme/live"]],
    ]);
    // Swapping acme off that server in the same file frees it.
    const swap = file(`
tenants:
  - {slug: acme, name: Acme, database: {server: "pg-new:5432", database: acme}}
  - {slug: c, name: C, database: {server: "pg-acme:5432", database: c}}
`);
    expect(planApply(swap, live).conflicts).toEqual([]);
  });

  it("finds a tenant that would end without a database binding", () => {
    const t = file(`
tenants:
  - {slug: acme, name: Acme}
  - {slug: newco, name: New}
`);
    const conflicts = planApply(t, live).conflicts;
    expect(conflicts.map((c) => [c.kind, c.subject])).toEqual([["binding_missing", "newco"]]);
  });

  it("finds a homoglyph of another tenant's name", () => {
    const t = file(`
tenants:
  - {slug: globex, name: G, hostnames: ["ѕhop.acme.com"], database: {server: "pg-g:5432", database: g}}
`);
    const conflicts = planApply(t, live).conflicts;
    expect(conflicts.map((c) => [c.kind, c.owners.map((o) => o.tenant)])).toEqual([["hostname_confusable", ["globex", "acme"]]]);
  });

  it("refuses invalid files with every issue listed", () => {
    const parsed = parseTenantFile(`
tenants:
  - {slug: api, name: X}
  - {slug: ok, name: Y, hostnames: ["*.wild.com", "10.0.0.1", "x.example.net", "v1.api.example.org"], plan: platinum}
  - {slug: ok, name: Z, database: {server: "010.0.0.1:5432", database: "bad name"}, upstreams: ["ftp://x"]}
`);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    const n = normalizeTenantFile(parsed.file, platform);
    expect(n.ok).toBe(false);
    if (n.ok) return;
    expect(n.issues.join("\n")).toMatch(/slug api is reserved/);
    expect(n.issues.join("\n")).toMatch(/wildcard/);
    expect(n.issues.join("\n")).toMatch(/ip literal/);
    expect(n.issues.join("\n")).toMatch(/under the platform domain/);
    expect(n.issues.join("\n")).toMatch(/is the API hostname/);
    expect(n.issues.join("\n")).toMatch(/plan must be one of/);
    expect(n.issues.join("\n")).toMatch(/listed twice/);
    expect(n.issues.join("\n")).toMatch(/ambiguous IPv4/);
    expect(n.issues.join("\n")).toMatch(/upstream origin/);
    expect(parseTenantFile("tenants: [").ok).toBe(false);
    expect(parseTenantFile("tenants:\n  - {slug: a, name: A, extra: 1}").ok).toBe(false);
    expect(parseTenantFile("tenants: []\ntenants: []").ok).toBe(false);
  });

  it("accepts the example file in deploy/ as valid and free of conflicts", () => {
    const text = readFileSync(new URL("../../../deploy/tenants.example.yaml", import.meta.url), "utf8");
    const plan = planApply(file(text), empty);
    expect(plan.conflicts).toEqual([]);
    expect(plan.changes.filter((c) => c.action === "create_tenant").map((c) => c.tenant)).toEqual(["acme", "globex"]);
  });
});
