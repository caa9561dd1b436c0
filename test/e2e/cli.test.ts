/**
 * The operator's daily admin calls through `portcullis` against a live control
 * plane: readable output by default, the API's JSON with --json, and exit codes
 * (0 ok, 1 refused, 2 usage, 3 unreachable). Run in process through `main` (the bin
 * is a thin wrapper, exercised by the preflight tests).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../control-plane/src/cli/main.ts";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { eventually, SECRETS, startTestStack, type TestStack } from "../helpers/stack.ts";

describe("portcullis admin commands", () => {
  let stack: TestStack;
  let dns: TestDnsServer;
  let env: Record<string, string>;

  beforeAll(async () => {
    dns = await startDnsServer();
    stack = await startTestStack({ env: { DNS_SERVERS: dns.address, DOMAIN_RECHECK_INTERVAL_MS: "0" } });
    env = { PORTCULLIS_ADMIN_URL: `http://127.0.0.1:${stack.adminPort}`, ADMIN_TOKEN: SECRETS.ADMIN_TOKEN };
  });
  afterAll(async () => {
    await stack?.close();
    await dns?.close();
  });

  async function cli(args: string[], e: Record<string, string | undefined> = env) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(args, e, { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { code, out, err, stdout: out.join("\n"), stderr: err.join("\n") };
  }

  it("creates, lists, shows, suspends, resumes and deletes tenants", async () => {
    const created = await cli(["tenants", "create", "hooli", "--name", "Hooli", "--plan", "pro"]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.out[0]).toMatch(/^created tenant hooli \(ten_[0-9a-z]+\) at hooli\.localhost$/);
    expect((await cli(["tenants", "create", "hooli", "--name", "Again"])).code).toBe(1);
    const taken = await cli(["tenants", "create", "hooli", "--name", "Again"]);
    expect(taken.stderr).toBe("error: slug_taken: The slug is taken.");
    const reserved = await cli(["tenants", "create", "admin", "--name", "Admin"]);
    expect(reserved.code).toBe(1);
    expect(reserved.stderr).toMatch(/slug_reserved/);

    const list = await cli(["tenants", "list"]);
    expect(list.code).toBe(0);
    expect(list.out[0]).toMatch(/^SLUG\s+STATUS\s+PLAN\s+DATABASE\s+HOSTNAMES\s+ID$/);
    expect(list.out.some((l) => /^hooli\s+active\s+pro\s+-\s+hooli\.localhost\s+ten_/.test(l))).toBe(true);
    const json = await cli(["tenants", "list", "--json"]);
    expect(JSON.parse(json.stdout).tenants.map((t: any) => t.slug)).toContain("hooli");

    const get = await cli(["tenants", "get", "hooli"]);
    expect(get.out).toContain("status   active");
    expect(get.out).toContain("database (none: traffic is refused until bound)");
    expect(JSON.parse((await cli(["tenants", "get", "hooli", "--json"])).stdout)).toMatchObject({ slug: "hooli", plan: "pro" });

    expect((await cli(["tenants", "suspend", "hooli"])).out).toEqual(["tenant hooli is suspended"]);
    expect((await stack.admin("GET", "/v1/tenants/hooli")).json().status).toBe("suspended");
    expect((await cli(["tenants", "resume", "hooli"])).out).toEqual(["tenant hooli is active"]);
    const deleted = await cli(["tenants", "delete", "hooli"]);
    expect(deleted.code).toBe(0);
    expect((await stack.admin("GET", "/v1/tenants/hooli")).status).toBe(404);
    const gone = await cli(["tenants", "get", "hooli"]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/not_found/);
  });

  it("adds, verifies, lists and deletes custom hostnames; the verified one routes", async () => {
    await stack.tenant("piedpiper");
    const added = await cli(["hostnames", "add", "piedpiper", "Compress.PiedPiper.test"]);
    expect(added.code, added.stderr).toBe(0);
    expect(added.out[0]).toBe("added compress.piedpiper.test to piedpiper (pending); it routes once verified");
    const record = /^ {2}(\S+) {2}TXT {2}"([^"]+)"$/.exec(added.out[2] ?? "");
    expect(record?.[1]).toBe("_portcullis-verify.compress.piedpiper.test");

    const early = await cli(["hostnames", "verify", "piedpiper", "compress.piedpiper.test"]);
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(/^error: verification_failed: .*\(no TXT record found\)$/);

    dns.setTxt(record![1]!, [record![2]!]);
    const verified = await cli(["hostnames", "verify", "piedpiper", "compress.piedpiper.test", "--json"]);
    expect(verified.code).toBe(0);
    expect(JSON.parse(verified.stdout)).toEqual({ hostname: "compress.piedpiper.test", status: "verified" });
    await eventually(async () => (await stack.request("compress.piedpiper.test")).status === 200, 1_000);

    const list = await cli(["hostnames", "list", "piedpiper"]);
    expect(list.out.some((l) => /^compress\.piedpiper\.test\s+custom\s+verified$/.test(l))).toBe(true);

    const dup = await cli(["hostnames", "add", "piedpiper", "COMPRESS.piedpiper.test."]);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/hostname_taken/);
    const platform = await cli(["hostnames", "add", "piedpiper", "other.localhost"]);
    expect(platform.stderr).toMatch(/hostname_reserved/);

    expect((await cli(["hostnames", "delete", "piedpiper", "compress.piedpiper.test"])).code).toBe(0);
    await eventually(async () => (await stack.request("compress.piedpiper.test")).status === 404, 1_000);
  });

  it("creates, lists and revokes API keys, showing the secret once", async () => {
    await stack.tenant("raviga");
    const created = await cli(["keys", "create", "raviga", "--name", "ci"]);
    expect(created.code, created.stderr).toBe(0);
    const id = /^created key (key_[0-9a-z]+) for raviga/.exec(created.out[0] ?? "")?.[1];
    expect(id).toBeDefined();
    const secret = created.out[1]!.trim();
    expect(secret.length).toBeGreaterThan(20);

    const list = await cli(["keys", "list", "raviga"]);
    expect(list.out[0]).toMatch(/^ID\s+PREFIX\s+NAME\s+STATUS\s+CREATED\s+EXPIRES\s+LAST USED$/);
    expect(list.out.some((l) => l.startsWith(id!) && /\bci\s+active\b/.test(l))).toBe(true);
    expect(list.stdout).not.toContain(secret);
    const json = JSON.parse((await cli(["keys", "list", "raviga", "--json"])).stdout);
    expect(json.keys[0]).toMatchObject({ id, name: "ci", status: "active" });
    expect(JSON.stringify(json)).not.toContain(secret);

    expect((await cli(["keys", "revoke", "raviga", id!])).out).toEqual([`revoked key ${id}`]);
    expect(JSON.parse((await cli(["keys", "list", "raviga", "--json"])).stdout).keys[0].status).toBe("revoked");
    const bad = await cli(["keys", "create", "raviga", "--expires-at", "yesterday"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/validation_failed/);
  });

  it("answers usage errors with 2, a wrong token with 1, and an unreachable control plane with 3", async () => {
    expect((await cli([])).code).toBe(0);
    expect((await cli(["help"])).out[0]).toMatch(/^usage: portcullis/);
    for (const args of [
      ["frobnicate"],
      ["tenants"],
      ["tenants", "get"],
      ["keys", "revoke", "x"],
      ["apply"],
      ["tenants", "list", "--bogus"],
    ]) {
      const run = await cli(args);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stderr).toMatch(/portcullis help/);
    }
    const noToken = await cli(["tenants", "list"], { PORTCULLIS_ADMIN_URL: env.PORTCULLIS_ADMIN_URL });
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toMatch(/ADMIN_TOKEN is not set/);
    const wrong = await cli(["tenants", "list"], { ...env, ADMIN_TOKEN: "not-the-admin-token-at-all" });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/unauthorized/);
    const down = await cli(["tenants", "list"], { ...env, PORTCULLIS_ADMIN_URL: "http://127.0.0.1:9" });
    expect(down.code).toBe(3);
  });

  it("hands `audit` to the audit module, or says this build has none", async () => {
    const { existsSync } = await import("node:fs");
    const present = existsSync(new URL("../../control-plane/src/cli/audit.ts", import.meta.url));
    const run = await cli(["audit", "verify"]);
    if (present) expect(run.err).not.toContain("audit commands are not available in this build");
    else {
      expect(run.code).toBe(2);
      expect(run.err).toEqual(["audit commands are not available in this build"]);
    }
  });
});
