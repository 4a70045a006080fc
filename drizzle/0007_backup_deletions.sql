CREATE TABLE "backup_deletions" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "backup_deletions_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"table_name" varchar(63) NOT NULL,
	"keys" jsonb,
	"xid" "xid8" DEFAULT pg_current_xact_id() NOT NULL,
	"deleted_at" timestamp DEFAULT (now() at time zone 'utc') NOT NULL
);
