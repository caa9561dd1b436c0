CREATE TABLE "admin_changes" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"time" timestamp with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL,
	"request_id" text NOT NULL,
	"action" text NOT NULL,
	"tenant_id" text,
	"target" text,
	"before" jsonb,
	"after" jsonb
);
--> statement-breakpoint
CREATE TABLE "audit_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"stream" text NOT NULL,
	"seq" bigint NOT NULL,
	"time" timestamp with time zone NOT NULL,
	"request_id" text NOT NULL,
	"decision" text NOT NULL,
	"reason" text NOT NULL,
	"tenant_id" text,
	"host" text NOT NULL,
	"method" text NOT NULL,
	"path" text NOT NULL,
	"credential" text NOT NULL,
	"key_id" text,
	"user_id" text,
	"client_ip" text NOT NULL,
	"status" integer NOT NULL,
	"prev_hash" text NOT NULL,
	"hash" text NOT NULL,
	CONSTRAINT "audit_events_stream_seq_unique" UNIQUE("stream","seq")
);
--> statement-breakpoint
CREATE TABLE "usage" (
	"tenant_id" text NOT NULL,
	"period" text NOT NULL,
	"requests" bigint DEFAULT 0 NOT NULL,
	"refused" bigint DEFAULT 0 NOT NULL,
	"bytes_in" bigint DEFAULT 0 NOT NULL,
	"bytes_out" bigint DEFAULT 0 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "usage_tenant_id_period_pk" PRIMARY KEY("tenant_id","period")
);
--> statement-breakpoint
ALTER TABLE "usage" ADD CONSTRAINT "usage_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "admin_changes_tenant_time_idx" ON "admin_changes" USING btree ("tenant_id","time");--> statement-breakpoint
CREATE INDEX "admin_changes_time_idx" ON "admin_changes" USING btree ("time");--> statement-breakpoint
CREATE INDEX "audit_events_tenant_time_idx" ON "audit_events" USING btree ("tenant_id","time");--> statement-breakpoint
CREATE INDEX "audit_events_time_idx" ON "audit_events" USING btree ("time");--> statement-breakpoint
CREATE INDEX "audit_events_request_id_idx" ON "audit_events" USING btree ("request_id");