/** `npm run migrate`: apply migrations to DATABASE_URL (or the embedded database). */
import { loadControlPlaneConfig } from "../config.ts";
import { migrate, openDatabase } from "./client.ts";

const config = loadControlPlaneConfig(process.env);
const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir });
await migrate(database);
await database.close();
console.log(`migrations applied (${database.kind})`);
