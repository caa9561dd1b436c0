import { bigserial, index, jsonb, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/** Configuration changes made through the admin API: who, what, before and after. */
export const adminChanges = pgTable(
  "admin_changes",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    time: timestamp("time", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    actor: text("actor").notNull(),
    requestId: text("request_id").notNull(),
    action: text("action").notNull(),
    tenantId: text("tenant_id"),
    target: text("target"),
    before: jsonb("before"),
    after: jsonb("after"),
  },
  (t) => [index("admin_changes_tenant_time_idx").on(t.tenantId, t.time), index("admin_changes_time_idx").on(t.time)],
);
