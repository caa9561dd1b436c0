import { index, integer, pgTable, text, unique } from "drizzle-orm/pg-core";
import { createdAt } from "./common.ts";
import { tenants } from "./tenants.ts";

export const upstreams = pgTable(
  "upstreams",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "cascade" }),
    url: text("url").notNull(),
    position: integer("position").notNull(),
    createdAt: createdAt(),
  },
  (t) => [index("upstreams_tenant_id_idx").on(t.tenantId), unique("upstreams_tenant_url_unique").on(t.tenantId, t.url)],
);
