/**
 * `portcullis`: the operator's command line. `apply -f FILE [--dry-run]` is the
 * deploy-time preflight of the contract; the other commands wrap the admin API's
 * daily calls (tenants, hostnames, keys) with readable output, or the API's JSON
 * with `--json`. It reaches the control plane at PORTCULLIS_ADMIN_URL with
 * ADMIN_TOKEN.
 *
 * Exit codes: 0 done / clean; 1 refused by the control plane, or preflight
 * conflicts; 2 usage error or invalid file; 3 the control plane could not be reached.
 */
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { request } from "undici";
import { webhookAlerts } from "../alerts/index.ts";
import type { ApplyReport } from "../apply/index.ts";
import { normalizeTenantFile, parseTenantFile } from "../apply/spec.ts";
import { type CliConfig, loadCliConfig } from "../config.ts";

export const EXIT = { ok: 0, refused: 1, usage: 2, unreachable: 3 } as const;

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

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

class Usage extends Error {}
class Unreachable extends Error {}

type ApiAnswer = { status: number; body: any };

function client(config: CliConfig) {
  return async (method: string, path: string, body?: unknown): Promise<ApiAnswer> => {
    if (!config.adminToken) throw new Usage("ADMIN_TOKEN is not set");
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(`${config.adminUrl}${path}`, {
        method: method as "GET",
        headers: {
          authorization: `Bearer ${config.adminToken}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? null : JSON.stringify(body),
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
    } catch (error) {
      throw new Unreachable(`cannot reach the control plane at ${config.adminUrl}: ${(error as Error).message}`);
    }
    const text = await res.body.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = { error: { code: "invalid_response", message: text.slice(0, 200) } };
    }
    return { status: res.statusCode, body: parsed };
  };
}

const enc = encodeURIComponent;

function refusal(io: Io, answer: ApiAnswer): number {
  const e = answer.body?.error ?? {};
  io.err(`error: ${e.code ?? answer.status}: ${e.message ?? "request failed"}${e.detail ? ` (${e.detail})` : ""}`);
  return EXIT.refused;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd(),
  );
}

function positional(args: string[], count: number, what: string): string[] {
  if (args.length !== count) throw new Usage(`expected ${what}`);
  return args;
}

function describeTenant(t: any): string[] {
  return [
    `tenant   ${t.slug} (${t.id})`,
    `name     ${t.name}`,
    `status   ${t.status}`,
    `plan     ${t.plan}`,
    `database ${t.database ? `${t.database.server}/${t.database.database}` : "(none: traffic is refused until bound)"}`,
    `upstreams ${t.upstreams.length > 0 ? t.upstreams.join(", ") : "(none)"}`,
    "hostnames",
    ...t.hostnames.map((h: any) => `  ${h.hostname}  ${h.kind}  ${h.status}`),
  ];
}

/** Prints an admin answer: its JSON with --json, else the readable lines; refusals as such. */
function printer(flags: Flags, io: Io) {
  return (answer: ApiAnswer, readable: (body: any) => string[]): number => {
    if (answer.status >= 300) return refusal(io, answer);
    for (const line of flags.json ? [JSON.stringify(answer.body, null, 2)] : readable(answer.body)) io.out(line);
    return EXIT.ok;
  };
}

async function tenantsCommand(args: string[], flags: Flags, api: ReturnType<typeof client>, io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const print = printer(flags, io);
  /** Every page of the list, as one answer (the first refusal as it is). */
  const allTenants = async (): Promise<ApiAnswer> => {
    const all: unknown[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await api("GET", `/v1/tenants${after === undefined ? "" : `?after=${enc(after)}`}`);
      if (page.status >= 300) return page;
      all.push(...page.body.tenants);
      if (typeof page.body.next !== "string") return { status: page.status, body: { tenants: all } };
      after = page.body.next;
    }
  };
  switch (sub) {
    case "list": {
      positional(rest, 0, "no arguments");
      return print(await allTenants(), (b) =>
        b.tenants.length === 0
          ? ["no tenants"]
          : table([
              ["SLUG", "STATUS", "PLAN", "DATABASE", "HOSTNAMES", "ID"],
              ...b.tenants.map((t: any) => [
                t.slug,
                t.status,
                t.plan,
                t.database ? t.database.server : "-",
                t.hostnames.map((h: any) => (h.status === "verified" ? h.hostname : `${h.hostname} (${h.status})`)).join(", "),
                t.id,
              ]),
            ]),
      );
    }
    case "get": {
      const [t] = positional(rest, 1, "tenants get <tenant>");
      return print(await api("GET", `/v1/tenants/${enc(t!)}`), describeTenant);
    }
    case "create": {
      const [slug] = positional(rest, 1, "tenants create <slug> --name NAME [--plan PLAN]");
      if (!flags.name) throw new Usage("tenants create needs --name");
      const answer = await api("POST", "/v1/tenants", { slug, name: flags.name, ...(flags.plan ? { plan: flags.plan } : {}) });
      return print(answer, (b) => [
        `created tenant ${b.slug} (${b.id}) at ${b.hostnames[0]?.hostname ?? "?"}`,
        "next: bind its database (PUT /v1/tenants/:tenant/database) and set its upstreams, or use `portcullis apply`",
      ]);
    }
    case "suspend":
    case "resume": {
      const [t] = positional(rest, 1, `tenants ${sub} <tenant>`);
      const answer = await api("PATCH", `/v1/tenants/${enc(t!)}`, { status: sub === "suspend" ? "suspended" : "active" });
      return print(answer, (b) => [`tenant ${b.slug} is ${b.status}`]);
    }
    case "delete": {
      const [t] = positional(rest, 1, "tenants delete <tenant>");
      const answer = await api("DELETE", `/v1/tenants/${enc(t!)}`);
      return print(answer, () => [`deleted tenant ${t}: its hostnames, keys and sessions no longer work`]);
    }
    default:
      throw new Usage(`unknown command: tenants ${sub ?? ""}`);
  }
}

async function hostnamesCommand(args: string[], flags: Flags, api: ReturnType<typeof client>, io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const print = printer(flags, io);
  switch (sub) {
    case "list": {
      const [t] = positional(rest, 1, "hostnames list <tenant>");
      const answer = await api("GET", `/v1/tenants/${enc(t!)}`);
      if (answer.status >= 300) return refusal(io, answer);
      if (flags.json) io.out(JSON.stringify({ hostnames: answer.body.hostnames }, null, 2));
      else
        for (const line of table([
          ["HOSTNAME", "KIND", "STATUS"],
          ...answer.body.hostnames.map((h: any) => [h.hostname, h.kind, h.status]),
        ]))
          io.out(line);
      return EXIT.ok;
    }
    case "add": {
      const [t, hostname] = positional(rest, 2, "hostnames add <tenant> <hostname>");
      return print(await api("POST", `/v1/tenants/${enc(t!)}/hostnames`, { hostname }), (b) => [
        `added ${b.hostname} to ${t} (${b.status}); it routes once verified`,
        "publish this DNS record, then run `portcullis hostnames verify`:",
        `  ${b.verification.name}  TXT  "${b.verification.value}"`,
      ]);
    }
    case "verify": {
      const [t, hostname] = positional(rest, 2, "hostnames verify <tenant> <hostname>");
      const answer = await api("POST", `/v1/tenants/${enc(t!)}/hostnames/${enc(hostname!)}/verify`);
      return print(answer, (b) => [`${b.hostname} is ${b.status}`]);
    }
    case "delete": {
      const [t, hostname] = positional(rest, 2, "hostnames delete <tenant> <hostname>");
      const answer = await api("DELETE", `/v1/tenants/${enc(t!)}/hostnames/${enc(hostname!)}`);
      return print(answer, () => [`deleted ${hostname} from ${t}`]);
    }
    default:
      throw new Usage(`unknown command: hostnames ${sub ?? ""}`);
  }
}

async function keysCommand(args: string[], flags: Flags, api: ReturnType<typeof client>, io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const print = printer(flags, io);
  switch (sub) {
    case "list": {
      const [t] = positional(rest, 1, "keys list <tenant>");
      return print(await api("GET", `/v1/tenants/${enc(t!)}/keys`), (b) =>
        b.keys.length === 0
          ? [`no keys for ${t}`]
          : table([
              ["ID", "PREFIX", "NAME", "STATUS", "CREATED", "EXPIRES", "LAST USED"],
              ...b.keys.map((k: any) => [
                k.id,
                k.prefix,
                k.name ?? "-",
                k.status,
                k.createdAt,
                k.expiresAt ?? "-",
                k.lastUsedAt ?? "-",
              ]),
            ]),
      );
    }
    case "create": {
      const [t] = positional(rest, 1, "keys create <tenant> [--name NAME] [--expires-at ISO-8601]");
      const answer = await api("POST", `/v1/tenants/${enc(t!)}/keys`, {
        ...(flags.name ? { name: flags.name } : {}),
        ...(flags["expires-at"] ? { expiresAt: flags["expires-at"] } : {}),
      });
      return print(answer, (b) => [`created key ${b.id} for ${t}; it is shown once:`, `  ${b.key}`]);
    }
    case "revoke": {
      const [t, id] = positional(rest, 2, "keys revoke <tenant> <keyId>");
      return print(await api("DELETE", `/v1/tenants/${enc(t!)}/keys/${enc(id!)}`), () => [`revoked key ${id}`]);
    }
    default:
      throw new Usage(`unknown command: keys ${sub ?? ""}`);
  }
}

async function applyCommand(flags: Flags, config: CliConfig, api: ReturnType<typeof client>, io: Io): Promise<number> {
  if (!flags.file) throw new Usage("apply needs -f FILE");
  let text: string;
  try {
    text = readFileSync(flags.file, "utf8");
  } catch (error) {
    io.err(`invalid file: cannot read ${flags.file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    return EXIT.usage;
  }
  const parsed = parseTenantFile(text);
  const normalized = parsed.ok ? normalizeTenantFile(parsed.file, null) : parsed;
  if (!parsed.ok || !normalized.ok) {
    for (const issue of normalized.ok ? [] : normalized.issues) io.err(`invalid: ${issue}`);
    io.err(`${flags.file} is not a valid tenant file; nothing was checked against the control plane`);
    return EXIT.usage;
  }
  const dryRun = flags["dry-run"] === true;
  const answer = await api("POST", "/v1/apply", { tenants: parsed.file.tenants, dryRun });
  if (answer.status === 400 || answer.status === 422) {
    const issues: string[] = answer.body?.issues ?? [answer.body?.error?.detail ?? answer.body?.error?.message ?? "invalid"];
    for (const issue of issues) io.err(`invalid: ${issue}`);
    io.err(`${flags.file} is not valid for this control plane; nothing was applied`);
    return EXIT.usage;
  }
  if (answer.status !== 200 && answer.status !== 409) return refusal(io, answer);
  const report = answer.body as ApplyReport;
  if (flags.json) io.out(JSON.stringify(report, null, 2));
  if (report.conflicts.length > 0) {
    if (!flags.json) for (const c of report.conflicts) io.out(`conflict: ${c.message}`);
    io.err(`preflight: ${report.conflicts.length} conflict(s) in ${flags.file}; nothing was applied`);
    const sent = await webhookAlerts(config.alertWebhookUrl)({
      type: "preflight_conflicts",
      severity: "critical",
      text: `Portcullis preflight found ${report.conflicts.length} conflict(s) in ${flags.file}: ${report.conflicts
        .map((c) => c.message)
        .join("; ")}`,
      time: new Date().toISOString(),
      file: flags.file,
      dryRun,
      adminUrl: config.adminUrl,
      conflicts: report.conflicts,
    });
    if (!sent.ok && sent.code === "send_failed") io.err(`warning: alert not delivered to ALERT_WEBHOOK_URL: ${sent.detail}`);
    return EXIT.refused;
  }
  if (!flags.json) {
    for (const c of report.changes) io.out(`${dryRun ? "would " : ""}${c.action.replace(/_/g, " ")}: ${c.tenant}: ${c.detail}`);
    if (report.changes.length === 0) io.out("no changes: the live system already matches the file");
    for (const v of report.verifications) io.out(`publish for ${v.hostname} (tenant ${v.tenant}): ${v.name}  TXT  "${v.value}"`);
    io.out(
      dryRun
        ? `preflight: no conflicts; ${report.changes.length} change(s) would be applied`
        : `applied ${report.changes.length} change(s) in one transaction`,
    );
  }
  return EXIT.ok;
}

interface Flags {
  json?: boolean;
  help?: boolean;
  file?: string;
  "dry-run"?: boolean;
  name?: string;
  plan?: string;
  "expires-at"?: string;
}

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
