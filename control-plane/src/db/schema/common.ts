import { bigint, pgSequence, timestamp } from "drizzle-orm/pg-core";

/**
 * The routing version: every write that changes what a router would decide takes a
 * new value, and cache entries carry it, so an older read never replaces a newer
 * write in Redis (see shared/src/cache/store.ts).
 */
export const routingVersion = pgSequence("routing_version_seq");

export const version = () => bigint("version", { mode: "number" }).notNull();
export const createdAt = () => timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow();
