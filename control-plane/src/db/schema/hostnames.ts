import { sql } from "drizzle-orm";
import { check, index, pgTable, text, timestamp } from "drizzle-orm/pg-core";
import { createdAt, version } from "./common.ts";
import { tenants } from "./tenants.ts";

/**
 * Hostnames, stored normalized (shared/hostname): the unique constraint on
 * `hostname` is what makes two concurrent claims of one name impossible.
 */
export const hostnames = pgTable(
  "hostnames",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "cascade" }),
    hostname: text("hostname").notNull().unique(),
    kind: text("kind", { enum: ["platform", "custom"] }).notNull(),
    status: text("status", { enum: ["pending", "verified", "failed"] }).notNull(),
    verificationToken: text("verification_token").notNull(),
    skeleton: text("skeleton").notNull(),
    verifiedAt: timestamp("verified_at", { withTimezone: true, mode: "date" }),
    lastCheckedAt: timestamp("last_checked_at", { withTimezone: true, mode: "date" }),
    missingSince: timestamp("missing_since", { withTimezone: true, mode: "date" }),
    version: version(),
    createdAt: createdAt(),
  },
  (t) => [
    index("hostnames_tenant_id_idx").on(t.tenantId),
    index("hostnames_skeleton_idx").on(t.skeleton),
    check("hostnames_kind_check", sql`${t.kind} in ('platform', 'custom')`),
    check("hostnames_status_check", sql`${t.status} in ('pending', 'verified', 'failed')`),
    check("hostnames_normalized_check", sql`${t.hostname} = lower(${t.hostname}) and ${t.hostname} not like '%.'`),
  ],
);
