/**
 * What `npm publish sdk/dist` would publish, used as an app would use it: the SDK built
 * (`sdk/scripts/build.ts`) into a `node_modules/@portcullis/sdk` of a scratch app under
 * test/output, then imported by plain JavaScript in a Node process with type stripping
 * off (Node never strips types under node_modules) — a signed request verified, a forged
 * one refused with 401, the RLS statements built — and type-checked by tsc from a
 * consumer's TypeScript file through the published declarations.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "../..");
const app = join(root, "test/output/sdk-consumer");
const pkg = join(app, "node_modules/@portcullis/sdk");

const run = (args: string[], cwd = app) => spawnSync(process.execPath, args, { cwd, encoding: "utf8", timeout: 120_000 });

describe("the published SDK package", () => {
  beforeAll(() => {
    rmSync(app, { recursive: true, force: true });
    mkdirSync(app, { recursive: true });
    const built = run([join(root, "sdk/scripts/build.ts"), pkg], root);
    expect(built.status, built.stderr + built.stdout).toBe(0);
  });
  afterAll(() => rmSync(app, { recursive: true, force: true }));

  it("is JavaScript with declarations and a manifest of its own, depending on no private package", () => {
    const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8"));
    expect(manifest.name).toBe("@portcullis/sdk");
    expect(manifest.exports["."]).toEqual({ types: "./index.d.ts", default: "./index.js" });
    expect(Object.keys(manifest.dependencies).sort()).toEqual(["drizzle-orm", "hono", "postgres"]);
    expect(readFileSync(join(pkg, "index.js"), "utf8")).not.toMatch(/from\s+["'][^"']+\.ts["']/);
    expect(readFileSync(join(pkg, "index.d.ts"), "utf8")).not.toMatch(/from\s+["'][^"']+\.ts["']/);
  });

  it("runs in plain Node without type stripping: verifies a signed request, refuses a forged one", () => {
    writeFileSync(
      join(app, "main.mjs"),
      `import { createServer, request } from "node:http";
import { verifyNode, tenantRlsSql } from "@portcullis/sdk";
import { randomContextKey, signedHeaders } from "@portcullis/sdk/testing";
const key = randomContextKey();
const guard = verifyNode({ keys: key });
const server = createServer((req, res) => { const t = guard(req, res); if (t) res.end(JSON.stringify({ id: t.id })); });
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const port = server.address().port;
const tenant = { id: "ten_pub", slug: "pub", db: "pg-pub.internal:5432/pub", features: [] };
const headers = signedHeaders({ key, tenant, host: "pub.test", target: "/x", method: "GET" });
// node:http, not fetch: fetch does not send a Host of the caller's choosing.
const get = (h) => new Promise((resolve, reject) => {
  request({ host: "127.0.0.1", port, path: "/x", headers: h }, (res) => {
    let body = "";
    res.on("data", (d) => (body += d));
    res.on("end", () => resolve({ status: res.statusCode, body }));
  }).on("error", reject).end();
});
const ok = await get({ ...headers, host: "pub.test" });
const forged = await get({ ...headers, host: "pub.test", "x-tenant-id": "ten_other" });
console.log(JSON.stringify({ ok: ok.status, body: JSON.parse(ok.body), forged: forged.status, rls: tenantRlsSql("orders").includes("FORCE ROW LEVEL SECURITY") }));
server.close();
`,
    );
    const out = run(["--no-experimental-strip-types", "main.mjs"]);
    expect(out.status, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout.trim())).toEqual({ ok: 200, body: { id: "ten_pub" }, forged: 401, rls: true });
  });

  it("type-checks a consumer through its declarations (and catches a misuse)", () => {
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          module: "nodenext",
          moduleResolution: "nodenext",
          target: "es2022",
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ["node"],
          typeRoots: [join(root, "node_modules/@types")],
        },
        files: ["consumer.ts"],
      }),
    );
    const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
    const consumer = (misuse: string) =>
      writeFileSync(
        join(app, "consumer.ts"),
        `import { verifyNode, type Tenant } from "@portcullis/sdk";
const guard = verifyNode({ keys: "pctx_1_x" });
export const id = (t: Tenant): string => t.id;
export { guard };
${misuse}
`,
      );
    consumer("");
    const good = run([tsc, "-p", "tsconfig.json"]);
    expect(good.status, good.stdout + good.stderr).toBe(0);
    consumer("export const wrong: number = ({} as Tenant).slug;");
    const bad = run([tsc, "-p", "tsconfig.json"]);
    expect(bad.status).not.toBe(0);
    expect(bad.stdout).toMatch(/consumer\.ts.*TS2322/);
  });
});
