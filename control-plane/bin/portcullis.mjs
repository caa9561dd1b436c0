#!/usr/bin/env node
// The `portcullis` command (npx portcullis). The CLI is TypeScript run directly by
// Node 24 (type stripping); `npx` and npm scripts put the project's Node 24 first
// on the PATH. Started by an older Node, re-run under the project's own binary.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const [major] = process.versions.node.split(".").map(Number);
if (major < 24) {
  const candidates = ["../../node_modules/node/bin/node", "../node_modules/node/bin/node"].map((p) =>
    fileURLToPath(new URL(p, import.meta.url)),
  );
  const node = candidates.find((p) => existsSync(p));
  if (!node) {
    process.stderr.write(`portcullis needs Node 24 or later (this is ${process.version}); run it through npx or npm scripts\n`);
    process.exit(2);
  }
  const run = spawnSync(node, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: "inherit" });
  process.exit(run.status ?? 2);
}

const { main, consoleIo } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2), process.env, consoleIo);
