/**
 * `portcullis`: the operator's command line. `apply -f FILE [--dry-run]` is the
 * deploy-time preflight (deploy/README.md); the other commands wrap the admin API's
 * daily calls (tenants, hostnames, keys) with readable output, or the API's JSON
 * with `--json`. It reaches the control plane at PORTCULLIS_ADMIN_URL with
 * ADMIN_TOKEN.
 *
 * This module parses the command line and dispatches; each command group lives
 * beside it (`apply.ts`, `tenants.ts`, `hostnames.ts`, `keys.ts`, `audit.ts`),
 * sharing the terminal helpers in `io.ts` and the admin API client in `api.ts`.
 *
 * Exit codes: 0 done / clean; 1 refused by the control plane, or preflight
 * conflicts; 2 usage error or invalid file; 3 the control plane could not be reached.
 */
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { type CliConfig, loadCliConfig } from "../config.ts";
import { client, Unreachable } from "./api.ts";
import { applyCommand } from "./apply.ts";
import { hostnamesCommand } from "./hostnames.ts";
import { EXIT, type Flags, type Io, Usage } from "./io.ts";
import { keysCommand } from "./keys.ts";
import { tenantsCommand } from "./tenants.ts";

export { EXIT, type Io } from "./io.ts";

const USAGE = `usage: portcullis <command> [options]

  apply -f FILE [--dry-run]          check FILE against itself and the live control plane;
                                     without --dry-run apply all of it in one transaction
  tenants list
  tenants get <tenant>
  tenants create <slug> --name NAME [--plan PLAN]
  tenants suspend|resume|delete <tenant>
  hostnames list <tenant>
  hostnames add|verify|delete <tenant> <hostname>
  keys list <tenant>
  keys create <tenant> [--name NAME] [--expires-at ISO-8601]
  keys revoke <tenant> <keyId>
  audit ...                          audit trail commands (see \`portcullis audit --help\`)

options: --json (print the API's JSON), -h/--help
environment: PORTCULLIS_ADMIN_URL (default http://127.0.0.1:8081), ADMIN_TOKEN, ALERT_WEBHOOK_URL
exit codes: 0 ok, 1 refused or conflicts, 2 usage or invalid file, 3 control plane unreachable`;

/** Run one command; returns the exit code. Never calls process.exit (tests run it in process). */
export async function main(argv: string[], env: Record<string, string | undefined>, io: Io): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "audit") {
    // The audit commands live in their own module, built separately; this build may not have it.
    const url = new URL("./audit.ts", import.meta.url);
    if (!existsSync(url)) {
      io.err("audit commands are not available in this build");
      return EXIT.usage;
    }
    const mod: { auditCommand?: (argv: string[], env: Record<string, string | undefined>) => Promise<number> } = await import(
      url.href
    );
    if (typeof mod.auditCommand !== "function") {
      io.err("audit commands are not available in this build");
      return EXIT.usage;
    }
    return mod.auditCommand(rest, env);
  }
  try {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        file: { type: "string", short: "f" },
        "dry-run": { type: "boolean" },
        name: { type: "string" },
        plan: { type: "string" },
        "expires-at": { type: "string" },
      },
    });
    const flags = values as Flags;
    if (!command || command === "help" || command === "--help" || command === "-h" || flags.help) {
      io.out(USAGE);
      return command && command !== "help" && command !== "--help" && command !== "-h" && !flags.help ? EXIT.usage : EXIT.ok;
    }
    let config: CliConfig;
    try {
      config = loadCliConfig(env);
    } catch (error) {
      throw new Usage((error as Error).message);
    }
    const api = client(config);
    switch (command) {
      case "apply":
        if (positionals.length > 0) throw new Usage("apply takes no positional arguments (use -f FILE)");
        return await applyCommand(flags, config, api, io);
      case "tenants":
        return await tenantsCommand(positionals, flags, api, io);
      case "hostnames":
        return await hostnamesCommand(positionals, flags, api, io);
      case "keys":
        return await keysCommand(positionals, flags, api, io);
      default:
        throw new Usage(`unknown command: ${command}`);
    }
  } catch (error) {
    if (error instanceof Unreachable) {
      io.err(`error: ${error.message}`);
      return EXIT.unreachable;
    }
    if (error instanceof Usage || (error as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS")) {
      io.err(`error: ${(error as Error).message}`);
      io.err("run `portcullis help` for usage");
      return EXIT.usage;
    }
    throw error;
  }
}

export const consoleIo: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2), process.env, consoleIo);
}
