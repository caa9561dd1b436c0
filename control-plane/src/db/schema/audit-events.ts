import { bigint, bigserial, index, integer, pgTable, text, timestamp, unique } from "drizzle-orm/pg-core";

/**
 * Routing decisions, one row per event. `tenant_id` has no foreign key on purpose:
 * the trail outlives the tenant, and refusals that matched no tenant have none.
 * Each event is hash-chained to the previous event of its stream (`stream`, `seq`):
 * `hash = sha256(prev_hash || canonical event)`, so an edited or deleted row breaks
 * the chain (`portcullis audit verify`).
 */
export const auditEvents = pgTable(
  "audit_events",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    stream: text("stream").notNull(),
    seq: bigint("seq", { mode: "number" }).notNull(),
    time: timestamp("time", { withTimezone: true, mode: "date" }).notNull(),
    requestId: text("request_id").notNull(),
    decision: text("decision", { enum: ["allow", "refuse"] }).notNull(),
    reason: text("reason").notNull(),
    tenantId: text("tenant_id"),
    host: text("host").notNull(),
    method: text("method").notNull(),
    path: text("path").notNull(),
    credential: text("credential").notNull(),
    keyId: text("key_id"),
    userId: text("user_id"),
    clientIp: text("client_ip").notNull(),
    status: integer("status").notNull(),
    // An aggregate of refusals under a flood stands for `count` of them; 1 otherwise.
    count: integer("count").notNull().default(1),
    prevHash: text("prev_hash").notNull(),
    hash: text("hash").notNull(),
  },
  (t) => [
    unique("audit_events_stream_seq_unique").on(t.stream, t.seq),
    index("audit_events_tenant_time_idx").on(t.tenantId, t.time),
    index("audit_events_time_idx").on(t.time),
    index("audit_events_request_id_idx").on(t.requestId),
  ],
);
