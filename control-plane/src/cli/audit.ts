/**
 * `portcullis audit verify [--stream S] [--since T] [--until T]`: checks the audit
 * trail's hash chain in Postgres (DATABASE_URL; unset: the embedded PGlite data)
 * and prints the first broken link. Exit 0: intact; 1: broken; 2: usage or
 * connection error.
 */
import { parseArgs } from "node:util";
import { loadControlPlaneConfig } from "../config.ts";
import { openDatabase } from "../db/client.ts";
import { chainNames, verifyChain } from "../audit/verify.ts";

const USAGE = "usage: portcullis audit verify [--stream NAME] [--since ISO-TIME] [--until ISO-TIME]";

function time(value: string | undefined, name: string): Date | undefined | null {
  if (value === undefined) return undefined;
  const t = new Date(value);
  if (Number.isNaN(t.getTime())) {
    console.error(`--${name}: not a time: ${value}`);
    return null;
  }
  return t;
}

export async function auditCommand(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  const args = argv[0] === "audit" ? argv.slice(1) : argv;
  let parsed: ReturnType<
    typeof parseArgs<{
      options: { stream: { type: "string" }; since: { type: "string" }; until: { type: "string" } };
      allowPositionals: true;
    }>
  >;
  try {
    parsed = parseArgs({
      args,
      options: { stream: { type: "string" }, since: { type: "string" }, until: { type: "string" } },
      allowPositionals: true,
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (parsed.positionals[0] !== "verify" || parsed.positionals.length > 1) {
    console.error(USAGE);
    return 2;
  }
  const since = time(parsed.values.since, "since");
  const until = time(parsed.values.until, "until");
  if (since === null || until === null) return 2;

  let config: ReturnType<typeof loadControlPlaneConfig>;
  try {
    config = loadControlPlaneConfig(env);
  } catch (error) {
    console.error((error as Error).message);
    return 2;
  }
  let database: Awaited<ReturnType<typeof openDatabase>>;
  try {
    database = await openDatabase({ url: config.databaseUrl, dataDir: `${config.dataDir}/pglite`, max: 1 });
  } catch (error) {
    console.error(`cannot open the database: ${(error as Error).message}`);
    return 2;
  }
  try {
    const streams = parsed.values.stream ? [parsed.values.stream] : await chainNames(database.db);
    if (streams.length === 0) console.log("no audit events to verify");
    let broken = false;
    for (const stream of streams) {
      const v = await verifyChain(database.db, {
        stream,
        ...(since ? { since } : {}),
        ...(until ? { until } : {}),
      });
      if (v.ok) {
        console.log(
          v.checked === 0
            ? `audit chain ${stream}: no events in range`
            : `audit chain ${stream}: intact (${v.checked} events, seq ${v.from}..${v.to})`,
        );
      } else {
        broken = true;
        console.log(
          `audit chain ${stream}: BROKEN at seq ${v.seq} (${v.code}): ${v.detail}` +
            `${v.requestId ? ` [request ${v.requestId}]` : ""}; ${v.checked} events before it verified`,
        );
      }
    }
    return broken ? 1 : 0;
  } catch (error) {
    console.error(`audit verify failed: ${(error as Error).message}`);
    return 2;
  } finally {
    await database.close();
  }
}
