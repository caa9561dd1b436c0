/**
 * The report of `npm run faults`: one table row per scenario, the checks behind each
 * PASS/FAIL, written to bench/results/<timestamp>-faults.md and, as a summary, into
 * docs/operations.md between `<!-- faults:start -->` and `<!-- faults:end -->`.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fmtMs, type Latency } from "./check.ts";

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface ScenarioResult {
  name: string;
  fault: string;
  sent: number;
  wrong: number;
  nonContract: number;
  during: Latency;
  after: Latency;
  /** ms from the fault's removal until warm traffic was back to normal; null: not within the window; undefined: not measured. */
  recoveryMs: number | null | undefined;
  recoveryWindowMs: number;
  auditLost: number | null;
  crashes: number;
  unhandled: number;
  rss: { name: string; before: number; after: number }[];
  checks: Check[];
  notes: string[];
  error?: string;
}

export function passed(r: ScenarioResult): boolean {
  return r.error === undefined && r.checks.every((c) => c.ok);
}

const trio = (l: Latency) => (l.n === 0 ? "–" : `${fmtMs(l.p50)} / ${fmtMs(l.p95)} / ${fmtMs(l.p99)}`);

function recovery(r: ScenarioResult): string {
  if (r.recoveryMs === undefined) return "–";
  if (r.recoveryMs === null) return `> ${(r.recoveryWindowMs / 1000).toFixed(0)} s`;
  return `${(r.recoveryMs / 1000).toFixed(2)} s`;
}

function rssCell(r: ScenarioResult): string {
  return r.rss
    .map(
      (p) =>
        `${p.name} ${Number.isFinite(p.before) ? p.before.toFixed(0) : "?"}→${Number.isFinite(p.after) ? p.after.toFixed(0) : "?"}`,
    )
    .join(", ");
}

/** The table; `compact` (docs/operations.md): without the RSS column, p95 only. */
export function table(results: ScenarioResult[], compact = false): string {
  const head = compact
    ? [
        "scenario",
        "sent",
        "wrong-tenant",
        "non-contract",
        "p95 during / after (ms)",
        "recovery",
        "audit lost",
        "crashes / unhandled",
        "result",
      ]
    : [
        "scenario",
        "requests sent",
        "wrong-tenant",
        "non-contract",
        "p50 / p95 / p99 during (ms)",
        "p50 / p95 / p99 after (ms)",
        "time to recover",
        "audit events lost",
        "crashes / unhandled",
        "RSS MiB before→after",
        "result",
      ];
  const rows = results.map((r) => {
    const common = [r.sent.toLocaleString("en-US"), String(r.wrong), String(r.nonContract)];
    const tail = [recovery(r), r.auditLost === null ? "–" : String(r.auditLost), `${r.crashes} / ${r.unhandled}`];
    const result = passed(r) ? "PASS" : "**FAIL**";
    return compact
      ? [`${r.name}: ${r.fault}`, ...common, `${fmtMs(r.during.p95)} / ${fmtMs(r.after.p95)}`, ...tail, result]
      : [`${r.name}: ${r.fault}`, ...common, trio(r.during), trio(r.after), ...tail, rssCell(r), result];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`;
  return [line(head), `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`, ...rows.map(line)].join("\n");
}

export function checksText(results: ScenarioResult[]): string {
  const out: string[] = [];
  for (const r of results) {
    out.push(`- **${r.name}** ${passed(r) ? "PASS" : "FAIL"}`);
    if (r.error) out.push(`  - harness error: ${r.error}`);
    for (const c of r.checks) out.push(`  - ${c.ok ? "ok" : "**FAIL**"} ${c.name}: ${c.detail}`);
    for (const n of r.notes) out.push(`  - note: ${n}`);
  }
  return out.join("\n");
}

/** Replaces the text between the markers of the faults section (docs/operations.md); appends the section when they are missing. */
export function updateFaultsSection(path: string, summary: string): void {
  const start = "<!-- faults:start -->";
  const end = "<!-- faults:end -->";
  let doc = readFileSync(path, "utf8");
  const block = `${start}\n${summary.trim()}\n${end}`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  if (i !== -1 && j > i) doc = doc.slice(0, i) + block + doc.slice(j + end.length);
  else {
    const section = `## Partial failure\n\n\`npm run faults\` (\`bench/faults.ts\`, under 5 minutes; \`-- --quick\` shortens the Postgres\noutage to 16 s) starts its own stack as separate processes (two routers, the control\nplane, the key service, its own \`redis-server\`, a throw-away Postgres database behind a\nTCP relay), drives steady traffic at both routers, injects one dependency failure at a\ntime and checks every answer. Results: \`bench/results/<time>-faults.md\`, with the checks\nbehind each row.\n\n${block}\n\n`;
    doc = `${doc.trimEnd()}\n\n${section}`;
  }
  writeFileSync(path, doc);
}
