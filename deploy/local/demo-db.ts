/**
 * The demo app's databases: one per tenant database binding, as the router signs it
 * (`x-tenant-db`). By default each is an embedded PGlite instance in memory (nothing
 * to install; orders placed are gone on restart); with a Postgres URL, each binding
 * becomes a database on that server (`<prefix><binding's database>`, created when
 * missing), since the demo bindings name servers that do not exist.
 *
 * Setup runs as the connection's own (owner, superuser) role: the orders table with
 * row-level security enabled and forced, the job queue, and an unprivileged role the
 * app's statements run as — RLS never applies to a superuser, which is what PGlite's
 * one user and a local Postgres's `postgres` are.
 */
import { randomBytes } from "node:crypto";
import { PGlite } from "@electric-sql/pglite";
import {
  createJobTable,
  type DatabaseBinding,
  type OpenedDatabase,
  queryOf,
  quoteIdent,
  quoteLiteral,
  tenantRlsStatements,
} from "@portcullis/sdk";
import { sql } from "drizzle-orm";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { integer, type PgDatabase, type PgQueryResultHKT, pgTable, text, timestamp } from "drizzle-orm/pg-core";
import postgres from "postgres";

/** The orders table as the app queries it (created by `setUp` below: the demo has no migration tool). */
export const orders = pgTable("orders", {
  id: text("id").primaryKey(),
  tenantId: text("tenant_id").notNull(),
  item: text("item").notNull(),
  quantity: integer("quantity").notNull(),
  status: text("status").notNull().default("placed"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

export type DemoDb = PgDatabase<PgQueryResultHKT, Record<string, never>>;

/** Ids are random and prefixed: unique across every tenant's database. */
export const orderId = () => `ord_${randomBytes(8).toString("hex")}`;

/** A few orders for a tenant whose database is empty. */
export interface Seed {
  tenantId: string;
  orders: { item: string; quantity: number }[];
}

export interface DemoDbOptions {
  /** The role the app's statements run as (created when missing). */
  role: string;
  /** Seeds by binding (`<server>/<database>`). */
  seeds?: Record<string, Seed>;
}

async function setUp(db: DemoDb, options: DemoDbOptions, binding: DatabaseBinding): Promise<void> {
  const run = queryOf(db);
  const role = quoteIdent(options.role);
  // CREATE ROLE has no IF NOT EXISTS; two databases set up at once may race on it.
  await run(`DO $$ BEGIN CREATE ROLE ${role} NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`);
  await run(`CREATE TABLE IF NOT EXISTS orders (
    id text PRIMARY KEY,
    tenant_id text NOT NULL,
    item text NOT NULL,
    quantity integer NOT NULL CHECK (quantity > 0),
    status text NOT NULL DEFAULT 'placed',
    created_at timestamptz NOT NULL DEFAULT now()
  )`);
  await run("CREATE INDEX IF NOT EXISTS orders_tenant_id_idx ON orders (tenant_id)");
  for (const statement of tenantRlsStatements("orders")) await run(statement);
  await createJobTable(db);
  for (const statement of [
    `GRANT USAGE ON SCHEMA public TO ${role}`,
    `GRANT SELECT, INSERT, UPDATE ON orders TO ${role}`,
    `GRANT SELECT, INSERT, UPDATE ON portcullis_jobs TO ${role}`,
    `GRANT USAGE ON SEQUENCE portcullis_jobs_id_seq TO ${role}`,
    // SET ROLE needs membership (a superuser has it anyway; a CREATEROLE owner does not).
    `GRANT ${role} TO CURRENT_USER`,
  ])
    await run(statement);
  const seed = options.seeds?.[binding.binding];
  if (seed === undefined) return;
  // Seeding is a migration step, outside any request: it sets the tenant itself, so
  // the forced policy checks these rows as it checks the app's.
  await db.transaction(async (tx) => {
    await tx.execute(sql`select set_config('app.tenant_id', ${seed.tenantId}, true)`);
    const [row] = (await queryOf(tx)(
      `select count(*)::int as n from orders where tenant_id = ${quoteLiteral(seed.tenantId)}`,
    )) as { n: number }[];
    if ((row?.n ?? 0) > 0) return;
    for (const o of seed.orders)
      await tx.insert(orders).values({ id: orderId(), tenantId: seed.tenantId, item: o.item, quantity: o.quantity });
  });
}

/** `open` for tenantDatabases: an in-memory PGlite per binding, its session switched to the app's role. */
export function pgliteDatabases(options: DemoDbOptions) {
  return async (binding: DatabaseBinding): Promise<OpenedDatabase<DemoDb>> => {
    const client = new PGlite();
    await client.waitReady;
    const db = drizzlePglite(client) as unknown as DemoDb;
    await setUp(db, options, binding);
    // PGlite has one session: from here on everything, scoped or not, runs unprivileged.
    await client.exec(`SET ROLE ${quoteIdent(options.role)}`);
    return { db, close: () => client.close() };
  };
}

/** `open` for tenantDatabases: a database per binding on the server of `url`, named `<prefix><database>`. */
export function postgresDatabases(url: string, options: DemoDbOptions & { prefix: string }) {
  const nameOf = (binding: DatabaseBinding) => `${options.prefix}${binding.database}`.toLowerCase().replace(/[^a-z0-9_]/g, "_");
  return async (binding: DatabaseBinding): Promise<OpenedDatabase<DemoDb>> => {
    const name = nameOf(binding);
    const admin = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const found = await admin`select 1 from pg_database where datname = ${name}`;
      if (found.length === 0)
        await admin.unsafe(`CREATE DATABASE ${quoteIdent(name)}`).catch((e: { code?: string }) => {
          if (e.code !== "42P04") throw e; // created meanwhile by another process
        });
    } finally {
      await admin.end({ timeout: 5 });
    }
    const target = new URL(url);
    target.pathname = `/${name}`;
    const client = postgres(target.toString(), { max: 5, idle_timeout: 30, onnotice: () => {} });
    const db = drizzlePostgres(client) as unknown as DemoDb;
    await setUp(db, options, binding);
    return { db, close: () => client.end({ timeout: 5 }) };
  };
}
