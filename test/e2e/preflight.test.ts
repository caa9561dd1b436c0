/**
 * `portcullis apply -f FILE [--dry-run]` as a pipeline runs it: a separate process
 * against a live control plane. Exit 0 clean, 1 conflicts (each on its own line
 * naming both owners, one JSON alert to ALERT_WEBHOOK_URL), 2 invalid file, 3
 * control plane unreachable; a real apply is one transaction: all of the file or
 * nothing, and what it applied routes.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.ts";
import { eventually, SECRETS, startTestStack, type TestStack } from "../helpers/stack.ts";
import { startWebhookReceiver, type WebhookReceiver } from "../helpers/webhook.ts";

// Tests that start many CLI processes get room for a loaded 2-core machine.
const SPAWN_HEAVY_TIMEOUT_MS = 120_000;

describe("portcullis apply (preflight)", () => {
  let stack: TestStack;
  let hook: WebhookReceiver;
  let dir: string;
  let env: Record<string, string>;
  let upstreamUrl: string;

  beforeAll(async () => {
    stack = await startTestStack({ env: { DOMAIN_RECHECK_INTERVAL_MS: "0" } });
    hook = await startWebhookReceiver();
    dir = mkdtempSync(join(tmpdir(), "pc-preflight-"));
    env = {
      PORTCULLIS_ADMIN_URL: `http://127.0.0.1:${stack.adminPort}`,
      ADMIN_TOKEN: SECRETS.ADMIN_TOKEN,
      ALERT_WEBHOOK_URL: hook.url,
    };
    // Live: acme owns shop.acme.com and pg-acme.internal:5432.
    await stack.tenant("acme");
    expect((await stack.admin("POST", "/v1/tenants/acme/hostnames", { hostname: "shop.acme.com" })).status).toBe(201);
    upstreamUrl = (await stack.upstream("applied-app")).url;
  });
  afterAll(async () => {
    await stack?.close();
    await hook?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let n = 0;
  const fileWith = (text: string) => {
    const path = join(dir, `tenants-${n++}.yaml`);
    writeFileSync(path, text);
    return path;
  };
  const slugs = async () =>
    ((await stack.admin("GET", "/v1/tenants")).json().tenants as { slug: string }[]).map((t) => t.slug).sort();

  it("exits 0 on a clean dry run, lists what it would do, and changes nothing", async () => {
    const file = fileWith(`
tenants:
  - slug: initech
    name: Initech
    plan: pro
    hostnames: [portal.initech.com]
    database: {server: "pg-initech.internal:5432", database: initech}
    upstreams: ["${upstreamUrl}"]
`);
    const before = await slugs();
    const alerts = hook.received.length;
    const run = await runCli(["apply", "-f", file, "--dry-run"], env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("would create tenant: initech");
    expect(run.stdout).toContain("would add hostname: initech: portal.initech.com (pending verification)");
    expect(run.lines.at(-1)).toMatch(/^preflight: no conflicts; \d+ change\(s\) would be applied$/);
    expect(await slugs()).toEqual(before);
    expect(hook.received.length).toBe(alerts);
  });

  it("exits 1 with one line per conflict naming both owners, and posts one JSON alert", async () => {
    const file = fileWith(`
tenants:
  - slug: alpha
    name: Alpha
    hostnames: ["Assistant.Example.com", "bücher.example"]
    database: {server: "pg-shared.internal:5432", database: alpha}
  - slug: beta
    name: Beta
    hostnames: ["assistant.example.com.", "xn--bcher-kva.example", "SHOP.acme.com:443"]
    database: {server: "PG-SHARED.internal:5432", database: beta}
  - slug: gamma
    name: Gamma
    hostnames: ["assistant.example.com:8443"]
    database: {server: "pg-acme.internal:5432", database: gamma}
  - slug: delta
    name: Delta
    hostnames: [delta.example]
`);
    const before = await slugs();
    const alerts = hook.received.length;
    const run = await runCli(["apply", "-f", file, "--dry-run"], env);
    expect(run.code, run.stderr).toBe(1);
    const conflicts = run.lines.filter((l) => l.startsWith("conflict: "));
    expect(conflicts).toEqual([
      'conflict: duplicate hostname assistant.example.com: claimed by tenant alpha (file, as "Assistant.Example.com") and by tenant beta (file, as "assistant.example.com.") and by tenant gamma (file, as "assistant.example.com:8443")',
      'conflict: duplicate hostname xn--bcher-kva.example: claimed by tenant alpha (file, as "bücher.example") and by tenant beta (file)',
      'conflict: hostname shop.acme.com: claimed by tenant beta (file, as "SHOP.acme.com:443") but owned by tenant acme (live)',
      "conflict: database server pg-shared.internal:5432: bound to tenant alpha (file) and to tenant beta (file)",
      "conflict: database server pg-acme.internal:5432: wanted by tenant gamma (file) but bound to tenant acme (live)",
      "conflict: tenant delta has no database binding: set database: {server, database} (a tenant without one cannot serve traffic)",
    ]);
    expect(run.stderr).toContain("preflight: 6 conflict(s)");
    expect(await slugs()).toEqual(before);

    await eventually(() => hook.received.length === alerts + 1, 2_000);
    const alert = hook.received.at(-1)!;
    expect(alert.contentType).toMatch(/application\/json/);
    expect(alert.body).toMatchObject({
      source: "portcullis",
      type: "preflight_conflicts",
      severity: "critical",
      file,
      dryRun: true,
    });
    expect(alert.body.conflicts.map((c: any) => c.kind)).toEqual([
      "duplicate_hostname",
      "duplicate_hostname",
      "hostname_owned",
      "server_shared",
      "server_bound",
      "binding_missing",
    ]);
    expect(alert.body.conflicts[2].owners).toEqual([
      { tenant: "beta", source: "file", as: "SHOP.acme.com:443" },
      { tenant: "acme", source: "live" },
    ]);
  });

  it("exits 1 without an alert when ALERT_WEBHOOK_URL is unset", async () => {
    const file = fileWith("tenants:\n  - {slug: lonely, name: Lonely}\n");
    const alerts = hook.received.length;
    const { ALERT_WEBHOOK_URL: _unset, ...quiet } = env;
    const run = await runCli(["apply", "-f", file, "--dry-run"], quiet);
    expect(run.code).toBe(1);
    expect(run.lines).toEqual([expect.stringMatching(/^conflict: tenant lonely has no database binding/)]);
    expect(hook.received.length).toBe(alerts);
  });

  it(
    "exits 2 on an invalid file, before or at the control plane, without an alert",
    async () => {
      const alerts = hook.received.length;
      const cases: [string, RegExp][] = [
        ["tenants: [\n", /YAML/],
        ["tenants:\n  - {slug: ok, name: Ok, colour: blue}\n", /unrecognized key/i],
        ["tenants:\n  - {slug: ok}\n", /name/],
        ["nothing: here\n", /tenants/],
        ["tenants:\n  - {slug: admin, name: Admin}\n", /reserved/],
        ["tenants:\n  - {slug: ok, name: Ok, hostnames: ['*.ok.com']}\n", /wildcard/],
        ["tenants:\n  - {slug: ok, name: Ok, hostnames: ['192.168.0.1']}\n", /ip literal/],
        ["tenants:\n  - {slug: ok, name: Ok}\n  - {slug: ok, name: Again}\n", /listed twice/],
        // Only the control plane knows its platform domain: refused there, still exit 2.
        [
          "tenants:\n  - {slug: ok, name: Ok, hostnames: [sneaky.localhost], database: {server: 'pg-ok:5432', database: ok}}\n",
          /platform domain/,
        ],
      ];
      for (const [text, why] of cases) {
        const run = await runCli(["apply", "-f", fileWith(text), "--dry-run"], env);
        expect(run.code, text).toBe(2);
        expect(run.stderr, text).toMatch(why);
      }
      const missing = await runCli(["apply", "-f", join(dir, "does-not-exist.yaml")], env);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/cannot read/);
      expect(hook.received.length).toBe(alerts);
    },
    SPAWN_HEAVY_TIMEOUT_MS,
  );

  it("exits 3 when the control plane cannot be reached", async () => {
    const file = fileWith("tenants:\n  - {slug: ok, name: Ok, database: {server: 'pg-ok:5432', database: ok}}\n");
    const run = await runCli(["apply", "-f", file, "--dry-run"], { ...env, PORTCULLIS_ADMIN_URL: "http://127.0.0.1:9" });
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/cannot reach the control plane/);
  });

  it("applies nothing when any part conflicts", async () => {
    const file = fileWith(`
tenants:
  - slug: fine
    name: Fine
    hostnames: [fine.example]
    database: {server: "pg-fine.internal:5432", database: fine}
  - slug: thief
    name: Thief
    hostnames: [shop.acme.com]
    database: {server: "pg-thief.internal:5432", database: thief}
`);
    const before = await slugs();
    const run = await runCli(["apply", "-f", file], env);
    expect(run.code).toBe(1);
    expect(run.lines).toEqual([
      "conflict: hostname shop.acme.com: claimed by tenant thief (file) but owned by tenant acme (live)",
    ]);
    expect(await slugs()).toEqual(before);
    const acme = (await stack.admin("GET", "/v1/tenants/acme")).json();
    expect(acme.hostnames.map((h: any) => h.hostname)).toContain("shop.acme.com");
  });

  it("rolls the whole transaction back when a write fails half-way", async () => {
    // A real database failure after the tenants and hostnames of the file were written.
    const db = stack.cp.database.db;
    await db.execute(sql`create function pc_test_refuse() returns trigger language plpgsql as $$
      begin if new.url like '%refused.invalid%' then raise exception 'refused by test trigger'; end if; return new; end $$`);
    await db.execute(
      sql`create trigger pc_test_refuse before insert on upstreams for each row execute function pc_test_refuse()`,
    );
    try {
      const file = fileWith(`
tenants:
  - {slug: first, name: First, hostnames: [first.example], database: {server: "pg-first:5432", database: first}, upstreams: ["${upstreamUrl}"]}
  - {slug: second, name: Second, database: {server: "pg-second:5432", database: second}, upstreams: ["http://refused.invalid:80"]}
`);
      const before = await slugs();
      const run = await runCli(["apply", "-f", file], env);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/internal/);
      expect(await slugs()).toEqual(before);
      const claimed = await db.execute(
        sql`select count(*)::int as n from hostnames where hostname in ('first.example', 'first.localhost')`,
      );
      expect(((claimed as any).rows ?? claimed)[0].n).toBe(0);
      const servers = await db.execute(sql`select count(*)::int as n from database_servers where address like 'pg-first%'`);
      expect(((servers as any).rows ?? servers)[0].n).toBe(0);
    } finally {
      await db.execute(sql`drop trigger pc_test_refuse on upstreams`);
      await db.execute(sql`drop function pc_test_refuse()`);
    }
  });

  it(
    "applies a clean file in one go: tenants route at once, custom domains wait for verification",
    async () => {
      const file = fileWith(`
tenants:
  - slug: initech
    name: Initech
    plan: pro
    hostnames: [portal.initech.com, "Status.Initech.com."]
    database: {server: "pg-initech.internal:5432", database: initech}
    upstreams: ["${upstreamUrl}"]
  - slug: acme
    name: Acme Corporation
`);
      const run = await runCli(["apply", "-f", file], env);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toContain("create tenant: initech");
      expect(run.stdout).toContain('update tenant: acme: name "acme inc" → "Acme Corporation"');
      expect(run.stdout).toMatch(
        /publish for portal\.initech\.com \(tenant initech\): _portcullis-verify\.portal\.initech\.com {2}TXT {2}"portcullis-verify=[0-9a-f]{40}"/,
      );
      expect(run.lines.at(-1)).toMatch(/^applied \d+ change\(s\) in one transaction$/);

      const initech = (await stack.admin("GET", "/v1/tenants/initech")).json();
      expect(initech).toMatchObject({
        plan: "pro",
        database: { server: "pg-initech.internal:5432", database: "initech" },
        upstreams: [upstreamUrl],
      });
      expect(initech.hostnames).toEqual([
        { hostname: "initech.localhost", kind: "platform", status: "verified" },
        { hostname: "portal.initech.com", kind: "custom", status: "pending" },
        { hostname: "status.initech.com", kind: "custom", status: "pending" },
      ]);
      expect((await stack.admin("GET", "/v1/tenants/acme")).json().hostnames.map((h: any) => h.hostname)).toContain(
        "shop.acme.com",
      );
      await eventually(async () => {
        const res = await stack.request("initech.localhost", "/hello");
        return res.status === 200 && res.json().app === "applied-app";
      }, 1_000);
      const contacts = stack.upstreamContacts;
      expect((await stack.request("portal.initech.com")).status).toBe(404);
      expect(stack.upstreamContacts).toBe(contacts);

      // Recorded per tenant in admin_changes, with what it was before.
      const recorded = await stack.cp.database.db.execute(
        sql`select target, actor, before, after from admin_changes where action = 'apply' order by id`,
      );
      const rows = ((recorded as any).rows ?? recorded) as { target: string; actor: string; before: any; after: any }[];
      expect(rows.map((r) => r.target)).toEqual(["initech", "acme"]);
      expect(rows[0]!.before).toBeNull();
      expect(rows[1]!.before).toMatchObject({ name: "acme inc", hostnames: ["shop.acme.com"] });
      expect(rows[1]!.after.changes).toEqual([
        { action: "update_tenant", tenant: "acme", detail: 'name "acme inc" → "Acme Corporation"' },
      ]);

      // Applying the same file again changes nothing.
      const again = await runCli(["apply", "-f", file, "--json"], env);
      expect(again.code).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({ dryRun: false, applied: true, conflicts: [], changes: [] });

      // A later file that drops a hostname removes it.
      const smaller = fileWith(`
tenants:
  - {slug: initech, name: Initech, hostnames: [portal.initech.com]}
`);
      const removed = await runCli(["apply", "-f", smaller], env);
      expect(removed.code, removed.stderr).toBe(0);
      expect(removed.stdout).toContain("remove hostname: initech: status.initech.com");
      const after = (await stack.admin("GET", "/v1/tenants/initech")).json();
      expect(after.hostnames.map((h: any) => h.hostname)).toEqual(["initech.localhost", "portal.initech.com"]);
    },
    SPAWN_HEAVY_TIMEOUT_MS,
  );

  it(
    "runs as `npx portcullis` from the repository root",
    async () => {
      const run = await runCli(["help"], env, { viaNpx: true });
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/usage: portcullis/);
      const dry = await runCli(["apply", "-f", fileWith("tenants: []\n"), "--dry-run"], env, { viaNpx: true });
      expect(dry.code, dry.stderr).toBe(0);
    },
    SPAWN_HEAVY_TIMEOUT_MS,
  );
});
