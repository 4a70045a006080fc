// A table added to the design (listed in docs/architecture.md under "Schema additions").
import { boolean, index, jsonb, pgTable, primaryKey, timestamp, varchar } from "drizzle-orm/pg-core";
import { utcNow } from "./columns";

// One row per (job, scheduled minute): claiming a run is an insert that only one host can win,
// which works through a transaction-mode pooler (session advisory locks do not) and does not
// have to hold a transaction open while a long job (a backup) runs.
export const jobRuns = pgTable(
  "job_runs",
  {
    job: varchar("job", { length: 64 }).notNull(),
    scheduledFor: timestamp("scheduled_for", { mode: "string" }).notNull(),
    startedAt: timestamp("started_at", { mode: "string" }).notNull().default(utcNow),
    finishedAt: timestamp("finished_at", { mode: "string" }),
    host: varchar("host", { length: 255 }).notNull(),
    ok: boolean("ok"),
    report: jsonb("report"),
  },
  (t) => [primaryKey({ name: "job_runs_pkey", columns: [t.job, t.scheduledFor] }), index("idx_job_runs_started_at").on(t.startedAt)],
);
