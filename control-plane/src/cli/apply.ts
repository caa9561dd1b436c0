/**
 * `portcullis apply -f FILE [--dry-run]`: the deploy-time preflight. The file is
 * checked on its own first (exit 2 when invalid, before the control plane is asked),
 * then against the live control plane (POST /v1/apply); conflicts exit 1 and are
 * posted to ALERT_WEBHOOK_URL, and without --dry-run a clean file is applied in one
 * transaction.
 */
import { readFileSync } from "node:fs";
import { webhookAlerts } from "../alerts/index.ts";
import type { ApplyReport } from "../apply/index.ts";
import { normalizeTenantFile, parseTenantFile } from "../apply/spec.ts";
import type { CliConfig } from "../config.ts";
import type { Api } from "./api.ts";
import { EXIT, type Flags, type Io, refusal, Usage } from "./io.ts";

export async function applyCommand(flags: Flags, config: CliConfig, api: Api, io: Io): Promise<number> {
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
  const answer = await api.apply({ body: { tenants: parsed.file.tenants, dryRun } });
  if (!answer.ok && (answer.status === 400 || answer.status === 422)) {
    const issues: string[] = answer.body.issues ?? [answer.body.error?.detail ?? answer.body.error?.message ?? "invalid"];
    for (const issue of issues) io.err(`invalid: ${issue}`);
    io.err(`${flags.file} is not valid for this control plane; nothing was applied`);
    return EXIT.usage;
  }
  if (answer.status !== 200 && answer.status !== 409) return refusal(io, answer);
  // 409 is the refusal with the report beside it (admin/app.ts).
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
