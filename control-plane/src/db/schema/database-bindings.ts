import { pgTable, text } from "drizzle-orm/pg-core";
import { createdAt } from "./common.ts";
import { databaseServers } from "./database-servers.ts";
import { tenants } from "./tenants.ts";

/**
 * A tenant's one dedicated database. `tenant_id` is the key (one binding per tenant)
 * and `server_id` is unique (a server serves at most one tenant): both enforced here.
 */
export const databaseBindings = pgTable("database_bindings", {
  tenantId: text("tenant_id")
    .primaryKey()
    .references(() => tenants.id, { onDelete: "cascade" }),
  serverId: text("server_id")
    .notNull()
    .unique()
    .references(() => databaseServers.id, { onDelete: "restrict" }),
  database: text("database").notNull(),
  createdAt: createdAt(),
});
