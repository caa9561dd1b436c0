/** `npm run migrate`: apply migrations to DATABASE_URL (or the embedded database). */
import { loadControlPlaneConfig } from "../config.ts";
import { migrate, openDatabase } from "./client.ts";

const config = loadControlPlaneConfig(process.env);
const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir });
try {
  await migrate(database);
} catch (error) {
  // A migration that refuses (e.g. 0003, two spellings of one database server bound to
  // two tenants) says why in Postgres' message and hint; drizzle wraps them in the query.
  const cause = (error as { cause?: { message?: string; hint?: string } }).cause;
  console.error(`migrations not applied: ${cause?.message ?? (error as Error).message}`);
  if (cause?.hint) console.error(`hint: ${cause.hint}`);
  await database.close();
  process.exit(1);
}
await database.close();
console.log(`migrations applied (${database.kind})`);
