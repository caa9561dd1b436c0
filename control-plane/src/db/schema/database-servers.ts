import { pgTable, text } from "drizzle-orm/pg-core";
import { createdAt } from "./common.ts";

/** Database servers, by normalized `host:port`. */
export const databaseServers = pgTable("database_servers", {
  id: text("id").primaryKey(),
  address: text("address").notNull().unique(),
  createdAt: createdAt(),
});
