/**
 * Leases of the control plane's singleton jobs (domain re-verification, the usage
 * collection timer): one row per job, held by one process until `expires_at` (the
 * database's clock), renewed while it lives. `fence` grows on every change of holder.
 */
import { bigint, pgTable, text, timestamp } from "drizzle-orm/pg-core";

export const jobLeases = pgTable("job_leases", {
  name: text("name").primaryKey(),
  holder: text("holder").notNull(),
  fence: bigint("fence", { mode: "number" }).notNull(),
  expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
});
