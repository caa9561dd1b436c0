import { bigint, index, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";
import { tenants } from "./tenants.ts";

/** Usage per tenant and calendar month (UTC, `YYYY-MM`), added to in batches. */
export const usage = pgTable(
  "usage",
  {
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "cascade" }),
    period: text("period").notNull(),
    requests: bigint("requests", { mode: "number" }).notNull().default(0),
    refused: bigint("refused", { mode: "number" }).notNull().default(0),
    bytesIn: bigint("bytes_in", { mode: "number" }).notNull().default(0),
    bytesOut: bigint("bytes_out", { mode: "number" }).notNull().default(0),
    updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.period] })],
);

/**
 * Usage batches already applied, by name: a batch whose collector died after its
 * transaction committed and before it dropped the batch from the store is finished
 * by the next collection, which finds its name here and does not count it twice.
 * Kept a day.
 */
export const usageBatches = pgTable(
  "usage_batches",
  {
    id: text("id").primaryKey(),
    appliedAt: timestamp("applied_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [index("usage_batches_applied_at_idx").on(t.appliedAt)],
);
