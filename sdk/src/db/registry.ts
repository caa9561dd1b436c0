/**
 * One database handle per tenant database binding (`x-tenant-db`), opened on first
 * use and kept in a bounded least-recently-used table: a platform with many tenants
 * does not hold a pool to each of them. An evicted handle is closed once the
 * transactions running on it end. Concurrent first uses of a binding share one open.
 *
 * `postgresJs(url)` opens drizzle over postgres.js pools; `open` takes any drizzle
 * Postgres database (PGlite, node-postgres) with its own close.
 */
import postgres from "postgres";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { PortcullisSdkError } from "../errors.ts";
import { type DatabaseBinding, isVerifiedTenant, type Tenant } from "../tenant.ts";
import { type AnyPgDatabase, type TransactionOf, withTenant } from "./with-tenant.ts";

export interface OpenedDatabase<D extends AnyPgDatabase> {
  db: D;
  close(): Promise<void>;
}

export interface TenantDatabasesOptions<D extends AnyPgDatabase> {
  /** Open the database a binding names. */
  open: (binding: DatabaseBinding) => Promise<OpenedDatabase<D>> | OpenedDatabase<D>;
  /** At most this many open at once (default 16); the least recently used is closed. */
  max?: number;
  /** `withTenant`'s `role`, for every transaction. */
  role?: string;
}

export interface TenantDatabases<D extends AnyPgDatabase> {
  /** `withTenant` on the database of the tenant's binding. */
  withTenant<T>(tenant: Tenant, fn: (tx: TransactionOf<D>) => Promise<T>): Promise<T>;
  /** Bindings open now, least recently used first. */
  readonly open: readonly string[];
  close(): Promise<void>;
}

interface Entry<D extends AnyPgDatabase> {
  opened: Promise<OpenedDatabase<D>>;
  active: number;
  evicted: boolean;
}

export function tenantDatabases<D extends AnyPgDatabase>(options: TenantDatabasesOptions<D>): TenantDatabases<D> {
  const max = options.max ?? 16;
  if (!Number.isInteger(max) || max < 1) throw new TypeError("tenantDatabases: max must be a positive integer");
  const entries = new Map<string, Entry<D>>();
  let closed = false;

  const release = async (entry: Entry<D>) => {
    if (!entry.evicted || entry.active > 0) return;
    // An open that failed has nothing to close.
    const opened = await entry.opened.catch(() => null);
    await opened?.close();
  };

  function acquire(binding: DatabaseBinding): Entry<D> {
    let entry = entries.get(binding.binding);
    if (entry !== undefined) {
      // Most recently used last: Map keeps insertion order.
      entries.delete(binding.binding);
      entries.set(binding.binding, entry);
    } else {
      const opening = Promise.resolve().then(() => options.open(binding));
      entry = { opened: opening, active: 0, evicted: false };
      const created = entry;
      // A failed open is forgotten, so the next request tries again.
      opening.catch(() => {
        if (entries.get(binding.binding) === created) entries.delete(binding.binding);
      });
      entries.set(binding.binding, entry);
      while (entries.size > max) {
        const [oldest, victim] = entries.entries().next().value as [string, Entry<D>];
        entries.delete(oldest);
        victim.evicted = true;
        void release(victim);
      }
    }
    entry.active++;
    return entry;
  }

  return {
    async withTenant(tenant, fn) {
      if (closed) throw new PortcullisSdkError("registry_closed");
      if (!isVerifiedTenant(tenant)) throw new PortcullisSdkError("unverified_tenant");
      const entry = acquire(tenant.database);
      try {
        const { db } = await entry.opened;
        return await withTenant(db, tenant, fn, options.role === undefined ? {} : { role: options.role });
      } finally {
        entry.active--;
        void release(entry);
      }
    },
    get open() {
      return [...entries.keys()];
    },
    async close() {
      closed = true;
      const all = [...entries.values()];
      entries.clear();
      for (const entry of all) entry.evicted = true;
      await Promise.all(all.map(release));
    },
  };
}

export interface PostgresJsOptions<TSchema extends Record<string, unknown>> {
  /** Options of each pool (default: 5 connections, 30 s idle timeout). */
  pool?: postgres.Options<Record<string, postgres.PostgresType>>;
  /** The drizzle schema, for relational queries. */
  schema?: TSchema;
}

/** An `open` for `tenantDatabases`: a postgres.js pool per binding, at the URL `url(binding)` gives. */
export function postgresJs<TSchema extends Record<string, unknown> = Record<string, never>>(
  url: (binding: DatabaseBinding) => string,
  options: PostgresJsOptions<TSchema> = {},
): (binding: DatabaseBinding) => OpenedDatabase<PostgresJsDatabase<TSchema>> {
  return (binding) => {
    const client = postgres(url(binding), { max: 5, idle_timeout: 30, onnotice: () => {}, ...options.pool });
    const db = options.schema === undefined ? drizzle(client) : drizzle(client, { schema: options.schema });
    return { db: db as PostgresJsDatabase<TSchema>, close: () => client.end({ timeout: 5 }) };
  };
}
