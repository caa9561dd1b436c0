import { pgTable, text } from "drizzle-orm/pg-core";
import { createdAt } from "./common.ts";

/** Database servers, by canonical `host:port` (shared/src/db-server; migration 0003 rewrote older rows). */
export const databaseServers = pgTable("database_servers", {
  id: text("id").primaryKey(),
  address: text("address").notNull().unique(),
  createdAt: createdAt(),
});
