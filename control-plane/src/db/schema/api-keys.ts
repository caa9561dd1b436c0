import { doublePrecision, index, integer, pgTable, text, timestamp } from "drizzle-orm/pg-core";
import { createdAt, version } from "./common.ts";
import { tenants } from "./tenants.ts";

/** API keys, stored as SHA-256 of the key; the key itself is shown once and never kept. */
export const apiKeys = pgTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "cascade" }),
    hash: text("hash").notNull().unique(),
    prefix: text("prefix").notNull(),
    name: text("name"),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }),
    revokedAt: timestamp("revoked_at", { withTimezone: true, mode: "date" }),
    lastUsedAt: timestamp("last_used_at", { withTimezone: true, mode: "date" }),
    // The key's own rate limit; null: the key's bucket uses the tenant's numbers.
    rateLimitRps: doublePrecision("rate_limit_rps"),
    // Null with a rate set: one second's worth of requests (as for tenants).
    rateLimitBurst: integer("rate_limit_burst"),
    version: version(),
    createdAt: createdAt(),
  },
  (t) => [index("api_keys_tenant_id_idx").on(t.tenantId)],
);
