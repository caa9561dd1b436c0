import { sql } from "drizzle-orm";
import { check, jsonb, pgTable, text, timestamp } from "drizzle-orm/pg-core";
import { createdAt, version } from "./common.ts";

export interface TenantLimitsOverride {
  requestsPerSecond?: number | null;
  burst?: number | null;
  monthlyRequests?: number | null;
  concurrency?: number | null;
  maxBodyBytes?: number | null;
}
export interface TenantSettings {
  allowedIps?: string[];
  branding?: { displayName?: string; logoUrl?: string; primaryColor?: string };
  /**
   * Which context key versions sign (set by rotation only, never by PATCH): absent
   * until the first rotation, meaning version 1. `until` is epoch ms.
   */
  contextKey?: { version: number; previous: { version: number; until: number } | null };
}

export const tenants = pgTable(
  "tenants",
  {
    id: text("id").primaryKey(),
    slug: text("slug").notNull().unique(),
    name: text("name").notNull(),
    status: text("status", { enum: ["active", "suspended"] })
      .notNull()
      .default("active"),
    plan: text("plan").notNull().default("free"),
    limits: jsonb("limits").$type<TenantLimitsOverride>().notNull().default({}),
    features: jsonb("features").$type<Record<string, boolean>>().notNull().default({}),
    settings: jsonb("settings").$type<TenantSettings>().notNull().default({}),
    version: version(),
    createdAt: createdAt(),
    updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [check("tenants_status_check", sql`${t.status} in ('active', 'suspended')`)],
);
