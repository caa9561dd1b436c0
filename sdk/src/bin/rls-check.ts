#!/usr/bin/env node
/**
 * `portcullis-rls-check [DATABASE_URL]`: for CI, after migrations. Lists every table
 * with a `tenant_id` column that row-level security does not fully guard (not
 * enabled, not forced, no tenant policy) and exits 1 when there is one; with
 * `--role` (run it with the app's own credentials) it also fails when that role is
 * a superuser or has BYPASSRLS. Exit 2: bad usage or no connection.
 */
import postgres from "postgres";
import { checkTenantRls } from "../db/rls.ts";

const args = process.argv.slice(2);
const checkRole = args.includes("--role");
const url = args.find((a) => !a.startsWith("--")) ?? process.env.DATABASE_URL;
if (!url) {
  console.error("usage: portcullis-rls-check [--role] <postgres url>   (or DATABASE_URL)");
  process.exit(2);
}
const sql = postgres(url, { max: 1, onnotice: () => {} });
try {
  const problems = await checkTenantRls((text) => sql.unsafe(text), { checkRole });
  for (const p of problems) console.log(`${p.code}\t${p.message}`);
  if (problems.length === 0) console.log("ok: every table with a tenant_id column is guarded by row-level security");
  process.exitCode = problems.length === 0 ? 0 : 1;
} catch (error) {
  console.error(`portcullis-rls-check: ${(error as Error).message}`);
  process.exitCode = 2;
} finally {
  await sql.end({ timeout: 5 });
}
