ALTER TABLE "api_keys" ADD COLUMN "rate_limit_rps" double precision;--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "rate_limit_burst" integer;