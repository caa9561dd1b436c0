/**
 * Throwaway Postgres for the SDK's tests: a database of its own per test file, owned
 * by a LOGIN role that is not a superuser (so FORCE ROW LEVEL SECURITY is what scopes
 * it), and an unprivileged app role; both roles and the database are dropped after.
 */
import { randomBytes } from "node:crypto";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { TEST_POSTGRES_URL } from "../helpers/env.ts";

export interface Connection {
  sql: postgres.Sql;
  db: PostgresJsDatabase;
}

export interface SdkTestDatabase {
  name: string;
  /** Owns the database and its tables; not a superuser. */
  owner: string;
  /** Unprivileged: what an app should connect as. */
  app: string;
  /** `<server>/<database>`, as the router would sign it for a tenant bound here. */
  binding: string;
  url(role?: string): string;
  /** A connection as `role` (default: the superuser of TEST_POSTGRES_URL), closed by drop(). */
  connect(role?: string, max?: number): Connection;
  drop(): Promise<void>;
}

/** A fresh database; `roles` reuses the roles of another one (two databases, one set of roles). */
export async function sdkTestDatabase(roles?: { owner: string; app: string }): Promise<SdkTestDatabase> {
  const id = randomBytes(5).toString("hex");
  const name = `pc_sdk_${id}`;
  const owner = roles?.owner ?? `pc_sdk_${id}_owner`;
  const app = roles?.app ?? `pc_sdk_${id}_app`;
  const root = postgres(TEST_POSTGRES_URL, { max: 1, onnotice: () => {} });
  if (roles === undefined) {
    await root.unsafe(`create role ${owner} login nosuperuser nobypassrls`);
    await root.unsafe(`create role ${app} login nosuperuser nobypassrls`);
  }
  await root.unsafe(`create database ${name} owner ${owner}`);
  await root.end();
  const base = new URL(TEST_POSTGRES_URL);
  const url = (role?: string) => {
    const u = new URL(base);
    u.pathname = `/${name}`;
    if (role !== undefined) {
      u.username = role;
      u.password = "";
    }
    return u.toString();
  };
  const clients: postgres.Sql[] = [];
  return {
    name,
    owner,
    app,
    binding: `${base.host}/${name}`,
    url,
    connect(role, max = 2) {
      const sql = postgres(url(role), { max, onnotice: () => {} });
      clients.push(sql);
      return { sql, db: drizzle(sql) };
    },
    async drop() {
      await Promise.all(clients.map((c) => c.end({ timeout: 5 })));
      const r = postgres(TEST_POSTGRES_URL, { max: 1, onnotice: () => {} });
      await r.unsafe(`drop database if exists ${name} with (force)`);
      if (roles === undefined) {
        // Other databases of these roles (a second one made with `roles`) are dropped first by their tests.
        await r.unsafe(`drop role if exists ${app}`).catch(() => {});
        await r.unsafe(`drop role if exists ${owner}`).catch(() => {});
      }
      await r.end();
    },
  };
}
