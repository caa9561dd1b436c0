/**
 * Row-level security for tenant-owned tables: the migration statements that turn it on
 * for a table with a `tenant_id` column, and the check (for CI) that lists every such
 * table where it is not fully on.
 *
 * ENABLE applies the policies to every role but the table's owner, superusers and
 * BYPASSRLS roles; FORCE applies them to the owner too, so an app that connects as the
 * role that ran its migrations is scoped as well. Superusers are never scoped: the
 * check can also report a connection that runs as one.
 */
import { sql } from "drizzle-orm";
import { PortcullisSdkError } from "../errors.ts";
import type { AnyPgDatabase } from "./with-tenant.ts";

/** A quoted SQL identifier (`"a""b"`); Postgres truncates past 63 bytes, so longer is refused. */
export function quoteIdent(name: string): string {
  if (name.length === 0 || Buffer.byteLength(name) > 63 || name.includes("\u0000"))
    throw new PortcullisSdkError("invalid_identifier", JSON.stringify(name));
  return `"${name.replaceAll('"', '""')}"`;
}

/** A quoted SQL string literal. */
export function quoteLiteral(value: string): string {
  if (value.includes("\u0000")) throw new PortcullisSdkError("invalid_identifier", "NUL in a literal");
  return `'${value.replaceAll("'", "''")}'`;
}

export interface RlsOptions {
  /** Schema of the table (default: unqualified, the search path decides). */
  schema?: string;
  /** The tenant column (default `tenant_id`). */
  column?: string;
  /** The policy's name (default `tenant_isolation`). */
  policy?: string;
  /**
   * The column's type when it is not text (`uuid`, `bigint`): the setting is cast to
   * it, so the comparison stays on the column and its index.
   */
  columnType?: string;
  /** The setting `withTenant` sets (default `app.tenant_id`). */
  setting?: string;
}

const TYPE = /^[a-z_][a-z0-9_ ]*(\(\d+\))?$/i;

/**
 * ENABLE and FORCE row-level security on `table` and (re)create its tenant policy:
 * rows are visible (USING) and writable (WITH CHECK) only where the tenant column
 * equals the transaction's `app.tenant_id`. Outside `withTenant` the setting is unset
 * or empty, `nullif` makes it NULL, and NULL equals nothing: no rows.
 */
export function tenantRlsStatements(table: string, options: RlsOptions = {}): string[] {
  const target = options.schema === undefined ? quoteIdent(table) : `${quoteIdent(options.schema)}.${quoteIdent(table)}`;
  const column = quoteIdent(options.column ?? "tenant_id");
  const policy = quoteIdent(options.policy ?? "tenant_isolation");
  if (options.columnType !== undefined && !TYPE.test(options.columnType))
    throw new PortcullisSdkError("invalid_identifier", `column type ${JSON.stringify(options.columnType)}`);
  const cast = options.columnType === undefined ? "" : `::${options.columnType}`;
  const setting = `nullif(current_setting(${quoteLiteral(options.setting ?? "app.tenant_id")}, true), '')${cast}`;
  const check = `${column} = ${setting}`;
  return [
    `ALTER TABLE ${target} ENABLE ROW LEVEL SECURITY`,
    `ALTER TABLE ${target} FORCE ROW LEVEL SECURITY`,
    `DROP POLICY IF EXISTS ${policy} ON ${target}`,
    `CREATE POLICY ${policy} ON ${target} AS PERMISSIVE FOR ALL USING (${check}) WITH CHECK (${check})`,
  ];
}

/** The same statements as one migration script. */
export function tenantRlsSql(table: string, options: RlsOptions = {}): string {
  return `${tenantRlsStatements(table, options).join(";\n")};\n`;
}

/** Runs one SQL text and answers its rows (`(q) => sql.unsafe(q)` for postgres.js). */
export type Query = (text: string) => Promise<readonly Record<string, unknown>[]>;

/** A `Query` over a drizzle database or transaction, whichever driver. */
export function queryOf(db: Pick<AnyPgDatabase, "execute">): Query {
  return async (text) => {
    const result = (await db.execute(sql.raw(text))) as unknown;
    return (Array.isArray(result) ? result : (result as { rows: Record<string, unknown>[] }).rows) as Record<string, unknown>[];
  };
}

export type RlsProblemCode = "rls_disabled" | "rls_not_forced" | "no_tenant_policy" | "role_bypasses_rls";

export interface RlsProblem {
  code: RlsProblemCode;
  /** `schema.table`, or the role for `role_bypasses_rls`. */
  subject: string;
  message: string;
}

export interface RlsCheckOptions {
  column?: string;
  setting?: string;
  /** Schemas to skip besides pg_catalog, information_schema and pg_toast. */
  excludeSchemas?: string[];
  /** Also report when the connection's own role bypasses RLS (run the check as the app's role). */
  checkRole?: boolean;
}

/**
 * Every table with a tenant column whose rows are not fully guarded: RLS not enabled,
 * not forced, or no policy that reads the tenant setting. Empty when all are.
 */
export async function checkTenantRls(db: AnyPgDatabase | Query, options: RlsCheckOptions = {}): Promise<RlsProblem[]> {
  const query = typeof db === "function" ? db : queryOf(db);
  const setting = options.setting ?? "app.tenant_id";
  const skip = ["pg_catalog", "information_schema", ...(options.excludeSchemas ?? [])].map(quoteLiteral).join(", ");
  const rows = await query(`
    select n.nspname as schema_name, c.relname as table_name,
           c.relrowsecurity as enabled, c.relforcerowsecurity as forced,
           exists (select 1 from pg_policy p where p.polrelid = c.oid
                   and strpos(coalesce(pg_get_expr(p.polqual, p.polrelid), ''), ${quoteLiteral(setting)}) > 0) as guarded
      from pg_class c
      join pg_namespace n on n.oid = c.relnamespace
      join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                          and a.attname = ${quoteLiteral(options.column ?? "tenant_id")}
     where c.relkind in ('r', 'p') and n.nspname not in (${skip}) and n.nspname not like 'pg\\_toast%'
     order by 1, 2`);
  const problems: RlsProblem[] = [];
  for (const row of rows) {
    const subject = `${row.schema_name}.${row.table_name}`;
    if (row.enabled !== true)
      problems.push({ code: "rls_disabled", subject, message: `${subject}: row-level security is not enabled` });
    if (row.forced !== true)
      problems.push({
        code: "rls_not_forced",
        subject,
        message: `${subject}: row-level security is not forced (the owner is not scoped)`,
      });
    if (row.guarded !== true)
      problems.push({
        code: "no_tenant_policy",
        subject,
        message: `${subject}: no policy compares the tenant column with ${setting}`,
      });
  }
  if (options.checkRole) {
    const [role] = await query(
      "select current_user as name, rolsuper as super, rolbypassrls as bypass from pg_roles where rolname = current_user",
    );
    if (role !== undefined && (role.super === true || role.bypass === true))
      problems.push({
        code: "role_bypasses_rls",
        subject: String(role.name),
        message: `role ${String(role.name)} is a superuser or has BYPASSRLS: no policy applies to it`,
      });
  }
  return problems;
}
