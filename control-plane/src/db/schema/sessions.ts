import { index, pgTable, text, timestamp } from "drizzle-orm/pg-core";
import { createdAt, version } from "./common.ts";
import { tenants } from "./tenants.ts";
import { users } from "./users.ts";

export const sessions = pgTable(
  "sessions",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "cascade" }),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
    revokedAt: timestamp("revoked_at", { withTimezone: true, mode: "date" }),
    version: version(),
    createdAt: createdAt(),
  },
  (t) => [index("sessions_tenant_id_idx").on(t.tenantId), index("sessions_user_id_idx").on(t.userId)],
);
