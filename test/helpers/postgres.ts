/**
 * A fresh Postgres database per test file (created, migrated, dropped), so files run
 * in parallel without sharing rows.
 */
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { migrate, openDatabase, type Database } from "@portcullis/control-plane";
import { TEST_POSTGRES_URL } from "./env.ts";

export interface TestDatabase {
  url: string;
  name: string;
  database: Database;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `pc_test_${randomBytes(6).toString("hex")}`;
  const admin = postgres(TEST_POSTGRES_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  const url = new URL(TEST_POSTGRES_URL);
  url.pathname = `/${name}`;
  const database = await openDatabase({ url: url.toString(), dataDir: "" });
  await migrate(database);
  return {
    url: url.toString(),
    name,
    database,
    async drop() {
      await database.close();
      const a = postgres(TEST_POSTGRES_URL, { max: 1, onnotice: () => {} });
      await a.unsafe(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  };
}
