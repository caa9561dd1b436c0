/**
 * `withTenant`: every statement of `fn` runs in one transaction that first sets
 * `app.tenant_id` to the verified tenant's id with `set_config(…, true)`, which is
 * transaction-local: the setting ends with the transaction, so a pooled connection
 * handed to the next request carries no tenant (and sees no rows) rather than the
 * previous one. Row-level security policies (`tenantRlsStatements`) compare
 * `tenant_id` with that setting, so the database, not the app's WHERE clauses,
 * decides which rows a statement can see or write.
 *
 * Works with any drizzle Postgres database (postgres.js, PGlite, node-postgres): only
 * `transaction` and `execute` are used.
 */
import { sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { PortcullisSdkError } from "../errors.ts";
import { isVerifiedTenant, type Tenant } from "../tenant.ts";
import { quoteIdent } from "./rls.ts";

/** The setting RLS policies read: `current_setting('app.tenant_id', true)`. */
export const TENANT_SETTING = "app.tenant_id";

export type AnyPgDatabase = PgDatabase<PgQueryResultHKT, any, any>;
export type TransactionOf<D extends AnyPgDatabase> = Parameters<Parameters<D["transaction"]>[0]>[0];

export interface WithTenantOptions {
  /**
   * Run the transaction as this role (`SET LOCAL ROLE`). Row-level security never
   * applies to a superuser or a BYPASSRLS role, even when forced: an app that must
   * connect as one (a local demo, a single-user database) names the unprivileged role
   * its statements should run as. Best is to connect as that role in the first place.
   */
  role?: string;
}

export async function withTenant<D extends AnyPgDatabase, T>(
  db: D,
  tenant: Tenant,
  fn: (tx: TransactionOf<D>) => Promise<T>,
  options: WithTenantOptions = {},
): Promise<T> {
  if (!isVerifiedTenant(tenant)) throw new PortcullisSdkError("unverified_tenant");
  const setRole = options.role === undefined ? null : sql.raw(`set local role ${quoteIdent(options.role)}`);
  return db.transaction(async (tx) => {
    await tx.execute(sql`select set_config(${TENANT_SETTING}, ${tenant.id}, true)`);
    if (setRole !== null) await tx.execute(setRole);
    return fn(tx as TransactionOf<D>);
  });
}
