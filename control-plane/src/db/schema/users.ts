import { index, pgTable, text } from "drizzle-orm/pg-core";
import { createdAt } from "./common.ts";
import { tenants } from "./tenants.ts";

/** Users: an email (lower-cased) belongs to one user of one tenant, platform-wide. */
export const users = pgTable(
  "users",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "cascade" }),
    email: text("email").notNull().unique(),
    createdAt: createdAt(),
  },
  (t) => [index("users_tenant_id_idx").on(t.tenantId)],
);
