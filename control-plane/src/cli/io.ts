/**
 * What every `portcullis` command shares on the terminal side: exit codes, where
 * lines go, the parsed flags, the usage error, and the helpers commands read their
 * arguments and print the admin API's answers with.
 */
/** An admin API answer as the printers take it (admin/client.ts `Answer`). */
export type ApiAnswer = { status: number; body: any };

export const EXIT = { ok: 0, refused: 1, usage: 2, unreachable: 3 } as const;

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

export interface Flags {
  json?: boolean;
  help?: boolean;
  file?: string;
  "dry-run"?: boolean;
  name?: string;
  plan?: string;
  "expires-at"?: string;
}

/** A mistake in the command line (or its environment): exit 2 with a pointer to `help`. */
export class Usage extends Error {}

export function positional(args: string[], count: number, what: string): string[] {
  if (args.length !== count) throw new Usage(`expected ${what}`);
  return args;
}

export function refusal(io: Io, answer: ApiAnswer): number {
  const e = answer.body?.error ?? {};
  io.err(`error: ${e.code ?? answer.status}: ${e.message ?? "request failed"}${e.detail ? ` (${e.detail})` : ""}`);
  return EXIT.refused;
}

export function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd(),
  );
}

/** Prints an admin answer: its JSON with --json, else the readable lines; refusals as such. */
export function printer(flags: Flags, io: Io) {
  return (answer: ApiAnswer, readable: (body: any) => string[]): number => {
    if (answer.status >= 300) return refusal(io, answer);
    for (const line of flags.json ? [JSON.stringify(answer.body, null, 2)] : readable(answer.body)) io.out(line);
    return EXIT.ok;
  };
}
