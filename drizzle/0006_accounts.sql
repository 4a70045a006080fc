CREATE TABLE "account_status" (
	"user_id" uuid PRIMARY KEY NOT NULL,
	"email_verified" boolean DEFAULT false NOT NULL,
	"disabled" boolean DEFAULT false NOT NULL,
	"updated_at" timestamp DEFAULT (now() at time zone 'utc') NOT NULL
);
--> statement-breakpoint
CREATE TABLE "account_tokens" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"purpose" varchar(32) NOT NULL,
	"token_hash" varchar(64) NOT NULL,
	"expires_at" timestamp NOT NULL,
	"used_at" timestamp,
	"created_at" timestamp DEFAULT (now() at time zone 'utc') NOT NULL,
	CONSTRAINT "account_tokens_token_hash_key" UNIQUE("token_hash"),
	CONSTRAINT "account_tokens_purpose_check" CHECK ("account_tokens"."purpose" in ('password_reset', 'email_verification'))
);
--> statement-breakpoint
CREATE TABLE "audit_events" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"at" timestamp NOT NULL,
	"action" varchar(64) NOT NULL,
	"actor_id" uuid,
	"target_type" varchar(32),
	"target_id" uuid,
	"ip" varchar(64),
	"request_id" varchar(128),
	"details" jsonb DEFAULT '{}'::jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "mail_outbox" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"kind" varchar(32) NOT NULL,
	"recipient" varchar(255) NOT NULL,
	"status" varchar(16) DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp NOT NULL,
	"claimed_at" timestamp,
	"claimed_by" varchar(255),
	"sent_at" timestamp,
	"last_error" varchar(500),
	"created_at" timestamp DEFAULT (now() at time zone 'utc') NOT NULL,
	CONSTRAINT "mail_outbox_kind_check" CHECK ("mail_outbox"."kind" in ('password_reset', 'email_verification')),
	CONSTRAINT "mail_outbox_status_check" CHECK ("mail_outbox"."status" in ('pending', 'sending', 'sent', 'skipped', 'failed'))
);
--> statement-breakpoint
CREATE TABLE "session_chains" (
	"session_id" uuid PRIMARY KEY NOT NULL,
	"started_at" timestamp NOT NULL
);
--> statement-breakpoint
ALTER TABLE "account_status" ADD CONSTRAINT "account_status_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "account_tokens" ADD CONSTRAINT "account_tokens_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "session_chains" ADD CONSTRAINT "session_chains_session_id_sessions_id_fk" FOREIGN KEY ("session_id") REFERENCES "public"."sessions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "idx_account_tokens_user_id" ON "account_tokens" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "idx_account_tokens_expires_at" ON "account_tokens" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "idx_audit_events_at_id" ON "audit_events" USING btree ("at","id");--> statement-breakpoint
CREATE INDEX "idx_audit_events_actor_id_at_id" ON "audit_events" USING btree ("actor_id","at","id");--> statement-breakpoint
CREATE INDEX "idx_audit_events_target_id_at_id" ON "audit_events" USING btree ("target_id","at","id");--> statement-breakpoint
CREATE INDEX "idx_audit_events_action_at_id" ON "audit_events" USING btree ("action","at","id");--> statement-breakpoint
CREATE INDEX "idx_mail_outbox_status_next_attempt_at" ON "mail_outbox" USING btree ("status","next_attempt_at");--> statement-breakpoint
CREATE INDEX "idx_mail_outbox_created_at" ON "mail_outbox" USING btree ("created_at");