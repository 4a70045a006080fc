CREATE TABLE "job_runs" (
	"job" varchar(64) NOT NULL,
	"scheduled_for" timestamp NOT NULL,
	"started_at" timestamp DEFAULT (now() at time zone 'utc') NOT NULL,
	"finished_at" timestamp,
	"host" varchar(255) NOT NULL,
	"ok" boolean,
	"report" jsonb,
	CONSTRAINT "job_runs_pkey" PRIMARY KEY("job","scheduled_for")
);
--> statement-breakpoint
CREATE INDEX "idx_job_runs_started_at" ON "job_runs" USING btree ("started_at");