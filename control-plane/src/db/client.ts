/**
 * The control plane's database: Postgres through postgres.js when DATABASE_URL is
 * set, else embedded PGlite under the data directory (the quickstart). Both are
 * drizzle PgDatabase instances over one schema, so the code above does not care.
 */
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { sql, type SQL } from "drizzle-orm";
import * as schema from "./schema/index.ts";

export type Schema = typeof schema;
export type Db = PgDatabase<PgQueryResultHKT, Schema>;
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];
export type Executor = Db | Tx;

export interface Database {
  db: Db;
  kind: "postgres" | "pglite";
  close(): Promise<void>;
}

export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../../drizzle", import.meta.url));

export async function openDatabase(options: { url?: string | undefined; dataDir: string; max?: number }): Promise<Database> {
  if (options.url) {
    const { default: postgres } = await import("postgres");
    const { drizzle } = await import("drizzle-orm/postgres-js");
    const client = postgres(options.url, {
      max: options.max ?? 10,
      onnotice: () => {},
      // A connection that cannot be made (refused, or accepted and never answered, as
      // through a partition) fails in 3 s, so requests answer 503 well within their
      // deadline; an idle connection is closed after 30 s rather than reused after a
      // partition that may have silently killed it.
      connect_timeout: 3,
      idle_timeout: 30,
    });
    return {
      db: drizzle(client, { schema }) as unknown as Db,
      kind: "postgres",
      close: () => client.end({ timeout: 5 }),
    };
  }
  const { PGlite } = await import("@electric-sql/pglite");
  const { drizzle } = await import("drizzle-orm/pglite");
  mkdirSync(options.dataDir, { recursive: true });
  const client = new PGlite(options.dataDir);
  await client.waitReady;
  return {
    db: drizzle(client, { schema }) as unknown as Db,
    kind: "pglite",
    close: () => client.close(),
  };
}

/** Apply the committed drizzle-kit migrations (the explicit migrate step). */
export async function migrate(database: Database): Promise<void> {
  if (database.kind === "postgres") {
    const { migrate: run } = await import("drizzle-orm/postgres-js/migrator");
    await run(database.db as never, { migrationsFolder: MIGRATIONS_FOLDER });
  } else {
    const { migrate: run } = await import("drizzle-orm/pglite/migrator");
    await run(database.db as never, { migrationsFolder: MIGRATIONS_FOLDER });
  }
}

/** Rows of a raw query, whichever driver ran it. */
export async function rows<T>(executor: Executor, query: SQL): Promise<T[]> {
  const result = (await executor.execute(query)) as unknown;
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

/** A new routing version (see schema/common.ts). */
export async function nextVersion(executor: Executor): Promise<number> {
  const [row] = await rows<{ v: string | number }>(executor, sql`select nextval('routing_version_seq') as v`);
  return Number(row?.v);
}

/** The latest routing version handed out, for "not found" answers. */
export async function currentVersion(executor: Executor): Promise<number> {
  const [row] = await rows<{ v: string | number }>(executor, sql`select last_value as v from routing_version_seq`);
  return Number(row?.v);
}
