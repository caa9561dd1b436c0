/**
 * One database server under two spellings. The rule "a database
 * server serves at most one tenant" is a unique constraint on the server's address,
 * so it holds only if every spelling of one server is stored as one canonical value
 * (shared/src/db-server). Over the admin API (real sockets, real Postgres), through
 * `portcullis apply --dry-run` (a separate process), and through the migration that
 * rewrites rows stored before canonicalisation.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { migrate, openDatabase, schema } from "@portcullis/control-plane";
import { canonicalDbServer } from "@portcullis/shared";
import { sql } from "drizzle-orm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { runCli } from "../helpers/cli.ts";
import { TEST_POSTGRES_URL } from "../helpers/env.ts";
import { SECRETS, startTestStack, type TestStack } from "../helpers/stack.ts";

const SPAWN_HEAVY_TIMEOUT_MS = 120_000;

describe("one database server under two spellings (admin API)", () => {
  let stack: TestStack;
  let dir: string;

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real", env: { DOMAIN_RECHECK_INTERVAL_MS: "0" } });
    dir = mkdtempSync(join(tmpdir(), "pc-db-spellings-"));
    for (const slug of ["spell-a", "spell-b", "spell-c", "spell-d"]) {
      expect((await stack.admin("POST", "/v1/tenants", { slug, name: slug })).status).toBe(201);
    }
  });
  afterAll(async () => {
    await stack?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const bind = (tenant: string, server: string, database = "app") =>
    stack.admin("PUT", `/v1/tenants/${tenant}/database`, { server, database });

  it("refuses [0:0:0:0:0:0:0:1]:5432, [::1] and [0::1]:5432 for tenant B once [::1]:5432 is tenant A's", async () => {
    const a = await bind("spell-a", "[::1]:5432");
    expect(a.status, a.text).toBe(200);
    expect(a.json().server).toBe("[::1]:5432");
    for (const spelling of ["[0:0:0:0:0:0:0:1]:5432", "[::1]", "[0::1]:5432", "[0000::0001]:05432", "[::0.0.0.1]:5432"]) {
      const b = await bind("spell-b", spelling);
      expect(b.status, `${spelling}: ${b.text}`).toBe(409);
      expect(b.json().error.code).toBe("server_taken");
    }
    // Tenant A may re-bind under any spelling: it is the same server, still A's.
    expect((await bind("spell-a", "[0:0:0:0:0:0:0:1]", "other")).status).toBe(200);
  });

  it("treats an IPv4-mapped IPv6 address as the IPv4 server, and host names by their canonical form", async () => {
    expect((await bind("spell-c", "10.0.0.1:5432")).status).toBe(200);
    for (const spelling of ["[::ffff:10.0.0.1]:5432", "[::FFFF:a00:1]", "10.0.0.1"]) {
      expect((await bind("spell-d", spelling)).status, spelling).toBe(409);
    }
    const named = await bind("spell-d", "PG.Bücher.Example.:5432");
    expect(named.status, named.text).toBe(200);
    expect(named.json().server).toBe("pg.xn--bcher-kva.example:5432");
    for (const spelling of ["pg.xn--bcher-kva.example", "pg.bücher.example.:05432"]) {
      expect((await bind("spell-c", spelling)).status, spelling).toBe(409);
    }
    // Stored canonically, so the router's x-tenant-db shows one spelling per server.
    const listed = (await stack.admin("GET", "/v1/tenants/spell-d")).json();
    expect(JSON.stringify(listed)).toContain("pg.xn--bcher-kva.example:5432");
  });

  it("refuses ambiguous IPv4 spellings (octal-looking octets) with a clear 400", async () => {
    for (const spelling of ["010.0.0.1:5432", "10.0.0.01", "0x0a.0.0.1:5432", "10.1:5432", "167772161:5432"]) {
      const res = await bind("spell-c", spelling);
      expect(res.status, spelling).toBe(400);
      expect(res.json().error.code).toBe("validation_failed");
      expect(res.json().error.detail, spelling).toMatch(/ambiguous IPv4/);
    }
    for (const spelling of ["::1:5432", "[::1%eth0]:5432", "[::1]:0", "[::1]:65536", "[1:2:3]:5432"]) {
      expect((await bind("spell-c", spelling)).status, spelling).toBe(400);
    }
  });

  it(
    "portcullis apply --dry-run reports two spellings of one server in one file as a conflict (exit 1)",
    async () => {
      const file = join(dir, "two-spellings.yaml");
      writeFileSync(
        file,
        `
tenants:
  - slug: spell-e
    name: E
    database: {server: "[2001:db8::5]:5432", database: e}
  - slug: spell-f
    name: F
    database: {server: "[2001:0DB8:0:0:0:0:0:5]", database: f}
`,
      );
      const run = await runCli(["apply", "-f", file, "--dry-run"], {
        PORTCULLIS_ADMIN_URL: `http://127.0.0.1:${stack.adminPort}`,
        ADMIN_TOKEN: SECRETS.ADMIN_TOKEN,
      });
      expect(run.code, run.stdout + run.stderr).toBe(1);
      expect(run.lines.filter((l) => l.startsWith("conflict: "))).toEqual([
        "conflict: database server [2001:db8::5]:5432: bound to tenant spell-e (file) and to tenant spell-f (file)",
      ]);

      // And against the live system: A's [::1]:5432 spelled another way.
      const live = join(dir, "live-spelling.yaml");
      writeFileSync(live, `tenants:\n  - {slug: spell-g, name: G, database: {server: "[0:0::1]", database: g}}\n`);
      const second = await runCli(["apply", "-f", live, "--dry-run"], {
        PORTCULLIS_ADMIN_URL: `http://127.0.0.1:${stack.adminPort}`,
        ADMIN_TOKEN: SECRETS.ADMIN_TOKEN,
      });
      expect(second.code, second.stdout + second.stderr).toBe(1);
      expect(second.lines.filter((l) => l.startsWith("conflict: "))).toEqual([
        "conflict: database server [::1]:5432: wanted by tenant spell-g (file) but bound to tenant spell-a (live)",
      ]);
    },
    SPAWN_HEAVY_TIMEOUT_MS,
  );
});

/**
 * The migration that canonicalises rows written before this rule: a database migrated
 * up to the previous migration gets rows in old spellings, then the real migrate step
 * (drizzle's migrator over the committed folder) runs.
 */
describe("migration 0003: stored database servers rewritten to canonical form", () => {
  const MIGRATIONS = fileURLToPath(new URL("../../control-plane/drizzle", import.meta.url));
  let oldFolder: string;
  const created: string[] = [];

  beforeAll(() => {
    // The committed folder as it was before this migration: its journal cut at 0002.
    oldFolder = mkdtempSync(join(tmpdir(), "pc-old-migrations-"));
    cpSync(MIGRATIONS, oldFolder, { recursive: true });
    const journal = JSON.parse(readFileSync(join(oldFolder, "meta/_journal.json"), "utf8"));
    journal.entries = journal.entries.filter((e: { idx: number }) => e.idx <= 2);
    writeFileSync(join(oldFolder, "meta/_journal.json"), JSON.stringify(journal));
  });
  afterAll(async () => {
    rmSync(oldFolder, { recursive: true, force: true });
    const admin = postgres(TEST_POSTGRES_URL, { max: 1, onnotice: () => {} });
    for (const name of created) await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end();
  });

  async function oldDatabase(rows: { tenant: string; address: string }[]) {
    const name = `pc_test_mig_${Math.random().toString(16).slice(2, 10)}`;
    const admin = postgres(TEST_POSTGRES_URL, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create database ${name}`);
    await admin.end();
    created.push(name);
    const url = new URL(TEST_POSTGRES_URL);
    url.pathname = `/${name}`;
    const database = await openDatabase({ url: url.toString(), dataDir: "" });
    const { migrate: run } = await import("drizzle-orm/postgres-js/migrator");
    await run(database.db as never, { migrationsFolder: oldFolder });
    for (const [i, row] of rows.entries()) {
      // Raw SQL as the old code left it: the rows bypass today's canonicalisation.
      await database.db.execute(
        sql`insert into tenants (id, slug, name, version) values (${`ten_m${i}`}, ${row.tenant}, ${row.tenant}, ${i + 1})`,
      );
      await database.db.execute(sql`insert into database_servers (id, address) values (${`srv_m${i}`}, ${row.address})`);
      await database.db.execute(
        sql`insert into database_bindings (tenant_id, server_id, database) values (${`ten_m${i}`}, ${`srv_m${i}`}, 'd')`,
      );
    }
    return database;
  }

  it("rewrites every old spelling to the canonical one", async () => {
    const old = [
      { tenant: "m-full", address: "[0:0:0:0:0:0:0:1]:5432" },
      { tenant: "m-mapped", address: "[::ffff:10.0.0.1]:6432" },
      { tenant: "m-mapped-hex", address: "[::ffff:a00:2]:5432" },
      { tenant: "m-zeros", address: "[2001:0db8:0000:0000:0001:0000:0000:0001]:5432" },
      { tenant: "m-one-zero", address: "[2001:db8:0:1:1:1:1:1]:5432" },
      { tenant: "m-compat", address: "[::10.0.0.3]:5432" },
      { tenant: "m-name", address: "pg-m.internal:5432" },
      { tenant: "m-v4", address: "10.0.0.4:5432" },
    ];
    const database = await oldDatabase(old);
    try {
      await migrate(database);
      const rows = await database.db.select().from(schema.databaseServers);
      expect(rows.map((r) => r.address).sort()).toEqual(
        [
          "[::1]:5432",
          "10.0.0.1:6432",
          "10.0.0.2:5432",
          "[2001:db8::1:0:0:1]:5432",
          "[2001:db8:0:1:1:1:1:1]:5432",
          "[::a00:3]:5432",
          "pg-m.internal:5432",
          "10.0.0.4:5432",
        ].sort(),
      );
    } finally {
      await database.close();
    }
  });

  it("its SQL canonicaliser agrees with shared/src/db-server on 2,000 generated IPv6 addresses (fast-check)", async () => {
    const database = await oldDatabase([]);
    try {
      const [create] = readFileSync(join(MIGRATIONS, "0003_canonical_db_servers.sql"), "utf8").split("--> statement-breakpoint");
      await database.db.execute(sql.raw(create as string));
      const group = fc.oneof(fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff }));
      const spelling = fc
        .record({
          groups: fc.array(group, { minLength: 8, maxLength: 8 }),
          mapped: fc.boolean(),
          pad: fc.boolean(),
          upper: fc.boolean(),
          port: fc.integer({ min: 1, max: 65535 }),
        })
        .map(({ groups, mapped, pad, upper, port }) => {
          const g = mapped ? [0, 0, 0, 0, 0, 0xffff, groups[6] as number, groups[7] as number] : groups;
          const text = g.map((x) => x.toString(16).padStart(pad ? 4 : 1, "0")).join(":");
          return `[${upper ? text.toUpperCase() : text}]:${port}`;
        });
      const inputs = fc.sample(spelling, { numRuns: 2_000, seed: 16_5 });
      const rows = (await database.db.execute(
        sql`select portcullis_canonical_db_server(x) as c from json_array_elements_text(${JSON.stringify(inputs)}::json) with ordinality as u(x, n) order by n`,
      )) as unknown as { c: string }[];
      const mismatches = inputs
        .map((input, i) => ({ input, sql: rows[i]?.c, ts: (canonicalDbServer(input) as { server?: string }).server }))
        .filter((m) => m.sql !== m.ts);
      expect(mismatches.slice(0, 5)).toEqual([]);
    } finally {
      await database.close();
    }
  });

  it("fails loudly, naming both tenants, when two rows are one server", async () => {
    const database = await oldDatabase([
      { tenant: "m-left", address: "[::1]:5432" },
      { tenant: "m-right", address: "[0:0:0:0:0:0:0:1]:5432" },
    ]);
    try {
      const failure = await migrate(database).then(
        () => null,
        (error: unknown) => error,
      );
      expect(failure).not.toBeNull();
      const text = String((failure as { cause?: unknown }).cause ?? failure) + String(failure);
      expect(text).toMatch(/\[::1\]:5432/);
      expect(text).toMatch(/m-left/);
      expect(text).toMatch(/m-right/);
      // Nothing was merged or rewritten: the migration is one transaction.
      const rows = await database.db.select().from(schema.databaseServers);
      expect(rows.map((r) => r.address).sort()).toEqual(["[0:0:0:0:0:0:0:1]:5432", "[::1]:5432"]);
    } finally {
      await database.close();
    }
  });
});
