-- Issue 16, item 8: under a flood, refusals beyond the router's refusal queue are written
-- as one aggregate event per client address, reason and tenant; `count` is how many
-- refusals such a row stands for (1 for a single decision). The hash chain covers it.
ALTER TABLE "audit_events" ADD COLUMN "count" integer DEFAULT 1 NOT NULL;