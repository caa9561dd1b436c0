/**
 * `npm run build -w @portcullis/sdk [-- <outDir>]`: the publishable package. Inside the
 * repository the SDK runs from its TypeScript sources; Node does not strip types under
 * node_modules, so what is published is JavaScript and declarations, in `dist/` (or
 * outDir) with a package.json of its own: `npm publish sdk/dist`.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const out = resolve(process.argv[2] ?? join(root, "dist"));
rmSync(out, { recursive: true, force: true });

const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const built = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", out], { stdio: "inherit" });
if (built.status !== 0) process.exit(built.status ?? 1);

// tsc rewrites `./x.ts` to `./x.js` in JavaScript but not in declarations.
const walk = (dir: string): string[] =>
  readdirSync(dir).flatMap((name) => (statSync(join(dir, name)).isDirectory() ? walk(join(dir, name)) : [join(dir, name)]));
for (const file of walk(out).filter((f) => f.endsWith(".d.ts"))) {
  const text = readFileSync(file, "utf8");
  writeFileSync(file, text.replace(/(from\s+|import\()(["'])(\.{1,2}\/[^"']+)\.ts\2/g, "$1$2$3.js$2"));
}

const source = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const entry = (path: string) => ({ types: `./${path}.d.ts`, default: `./${path}.js` });
const manifest = {
  name: source.name,
  version: source.version,
  description: source.description,
  type: "module",
  // The published JavaScript needs no type stripping: any maintained Node.
  engines: { node: ">=20" },
  exports: { ".": entry("index"), "./context": entry("context/index"), "./testing": entry("testing/index") },
  types: "./index.d.ts",
  bin: { "portcullis-rls-check": "./bin/rls-check.js" },
  dependencies: source.dependencies,
};
writeFileSync(join(out, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
copyFileSync(join(root, "README.md"), join(out, "README.md"));
console.log(`built ${source.name}@${source.version} in ${out}`);
