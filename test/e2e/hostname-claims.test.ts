/**
 * Who may claim which name: one normalized form per hostname (case, trailing dot,
 * port, Unicode and punycode spellings are one name), uniqueness settled by the
 * database even for simultaneous claims, names of the platform refused, homoglyphs
 * of another tenant's name refused, reserved platform names refused as slugs.
 */
import { domainToASCII } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestStack, type TestStack } from "../helpers/stack.ts";

describe("hostname claims", () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack({ env: { DOMAIN_RECHECK_INTERVAL_MS: "0" } });
    await stack.tenant("acme");
    await stack.tenant("globex");
  });
  afterAll(async () => {
    await stack?.close();
  });

  const claim = (tenant: string, hostname: string) => stack.admin("POST", `/v1/tenants/${tenant}/hostnames`, { hostname });

  it("treats every spelling of one name as a duplicate, for another tenant and for the same one", async () => {
    expect((await claim("acme", "shop.acme.com")).status).toBe(201);
    for (const spelling of [
      "SHOP.ACME.COM",
      "Shop.Acme.Com",
      "shop.acme.com.",
      "shop.acme.com:443",
      "SHOP.acme.com.:8443".replace(".:", ":"),
    ]) {
      for (const tenant of ["globex", "acme"]) {
        const res = await claim(tenant, spelling);
        expect(res.status, `${tenant} ${spelling}`).toBe(409);
        expect(res.json().error.code).toBe("hostname_taken");
        expect(res.json().error.detail).toBe("shop.acme.com");
      }
    }
  });

  it("treats the Unicode and punycode forms of an IDN as one name", async () => {
    const created = await claim("acme", "bücher.example");
    expect(created.status).toBe(201);
    expect(created.json().hostname).toBe("xn--bcher-kva.example");
    for (const spelling of ["xn--bcher-kva.example", "XN--BCHER-KVA.EXAMPLE.", "BÜCHER.example", "bücher.example:443"]) {
      const res = await claim("globex", spelling);
      expect(res.status, spelling).toBe(409);
      expect(res.json().error.code).toBe("hostname_taken");
    }
    // The owner addresses it by either form too.
    const del = await stack.admin("DELETE", `/v1/tenants/acme/hostnames/${encodeURIComponent("BÜCHER.example.")}`);
    expect(del.status).toBe(204);
    expect((await claim("globex", "xn--bcher-kva.example")).status).toBe(201);
  });

  it("lets exactly one of many simultaneous claims of one name win (the database decides)", async () => {
    for (let round = 0; round < 5; round++) {
      const name = `race-${round}.contested.example`;
      const spellings = [name, name.toUpperCase(), `${name}.`, `${name}:443`];
      const answers = await Promise.all(
        spellings.flatMap((s, i) => [claim(i % 2 === 0 ? "acme" : "globex", s), claim(i % 2 === 0 ? "globex" : "acme", s)]),
      );
      const statuses = answers.map((a) => a.status).sort();
      expect(
        statuses.filter((s) => s === 201),
        `round ${round}: ${statuses}`,
      ).toHaveLength(1);
      expect(statuses.filter((s) => s === 409)).toHaveLength(answers.length - 1);
      const owners = [];
      for (const t of ["acme", "globex"]) {
        const view = (await stack.admin("GET", `/v1/tenants/${t}`)).json();
        if (view.hostnames.some((h: any) => h.hostname === name)) owners.push(t);
      }
      expect(owners).toHaveLength(1);
    }
  });

  it("refuses names under the platform domain and the API hostname", async () => {
    for (const name of [
      "globex.localhost",
      "acme.localhost",
      "new.localhost",
      "localhost",
      "api.localhost",
      "x.api.localhost",
      "a.b.localhost.",
      "GLOBEX.LOCALHOST:8080",
    ]) {
      const res = await claim("acme", name);
      expect([422], name).toContain(res.status);
      expect(["hostname_reserved", "hostname_invalid"], name).toContain(res.json().error.code);
    }
    expect((await claim("acme", "globex.localhost")).json().error.code).toBe("hostname_reserved");
  });

  it("refuses wildcards, IP literals, invalid labels and single labels", async () => {
    const invalid = [
      "*.acme.com",
      "*",
      "a.*.acme.com",
      "127.0.0.1",
      "10.1.2.3:443",
      "0x7f.1",
      "2130706433",
      "[::1]",
      "::1",
      "-bad.acme.com",
      "bad-.acme.com",
      "under_score.acme.com",
      "a..acme.com",
      `${"a".repeat(64)}.acme.com`,
      "acme.com:0",
      "acme.com:99999",
      "ab--cd.acme.com",
      "xn--zz.acme.com",
      "intranet",
      "space .acme.com",
      "tab\t.acme.com",
    ];
    for (const name of invalid) {
      const res = await claim("acme", name);
      expect(res.status, JSON.stringify(name)).toBe(422);
      expect(res.json().error.code).toBe("hostname_invalid");
    }
  });

  it("refuses a homoglyph of another tenant's name, but not the owner's own or plain-ASCII near misses", async () => {
    expect((await claim("acme", "paypal-shop.com")).status).toBe(201);
    // Cyrillic "р" and "а" in place of Latin p and a.
    const spoof = await claim("globex", "\u0440\u0430ypal-shop.com");
    expect(spoof.status).toBe(409);
    expect(spoof.json().error.code).toBe("hostname_confusable");
    expect(spoof.json().error.detail).toBe("paypal-shop.com");
    // Greek omicron for o.
    expect((await claim("acme", "store.example")).status).toBe(201);
    const omicron = await claim("globex", "st\u03bfre.example");
    expect(omicron.status).toBe(409);
    // The owner may register its own look-alike (a defensive registration).
    expect((await claim("acme", "\u0440\u0430ypal-shop.com")).status).toBe(201);
    // Two different ASCII names are different registrable domains, each proven by DNS.
    expect((await claim("acme", "modern.example")).status).toBe(201);
    expect((await claim("globex", "modem.example")).status).toBe(201);
  });

  it("lets only one tenant win simultaneous claims of look-alike names", async () => {
    // Five spellings with one skeleton: Latin, Cyrillic а, Latin alpha ɑ, Greek α, Cyrillic к.
    const spellings = (n: number) => [
      `bank${n}.example`,
      `b\u0430nk${n}.example`,
      `b\u0251nk${n}.example`,
      `b\u03b1nk${n}.example`,
      `ban\u043a${n}.example`,
    ];
    for (let round = 0; round < 8; round++) {
      const names = spellings(round);
      const answers = await Promise.all(names.map((name, i) => claim(i % 2 === 0 ? "acme" : "globex", name)));
      expect(answers.filter((a) => a.status === 201).length, `round ${round}`).toBeGreaterThanOrEqual(1);
      for (const a of answers.filter((x) => x.status !== 201)) expect(a.json().error.code).toBe("hostname_confusable");
      const normalized = new Set(names.map((n) => domainToASCII(n)));
      const holders = new Set<string>();
      for (const t of ["acme", "globex"]) {
        const view = (await stack.admin("GET", `/v1/tenants/${t}`)).json();
        if (view.hostnames.some((h: any) => normalized.has(h.hostname))) holders.add(t);
      }
      // One tenant may hold several look-alikes of its own name; never both tenants.
      expect([...holders], `round ${round}`).toHaveLength(1);
    }
  });

  it("refuses reserved platform names and invalid slugs as tenants", async () => {
    for (const slug of ["api", "admin", "www", "status", "portcullis", "login", "localhost"]) {
      const res = await stack.admin("POST", "/v1/tenants", { slug, name: "Reserved" });
      expect(res.status, slug).toBe(422);
      expect(res.json().error.code).toBe("slug_reserved");
    }
    for (const slug of ["Acme", "-acme", "acme-", "ac--me", "ac_me", "a.b", "ac me"]) {
      const res = await stack.admin("POST", "/v1/tenants", { slug, name: "Invalid" });
      expect(res.status, slug).toBe(400);
    }
  });
});
