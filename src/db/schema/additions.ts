// Tables and indexes added to the design, each because correctness or a query needs it
// (listed in docs/architecture.md under "Schema additions").
import { boolean, index, integer, jsonb, pgTable, primaryKey, timestamp, uuid, varchar } from "drizzle-orm/pg-core";
import { createdAt, utcNow } from "./columns";
import { orders } from "./orders";
import { users } from "./users";

// Failed-login counters shared by every instance and isolate: the throttle cannot live in memory.
// `key` is `email:<address>` or `ip:<address>`.
export const loginThrottle = pgTable(
  "login_throttle",
  {
    key: varchar("key", { length: 320 }).primaryKey(),
    failures: integer("failures").notNull(),
    windowStartedAt: timestamp("window_started_at", { mode: "string" }).notNull(),
    expiresAt: timestamp("expires_at", { mode: "string" }).notNull(),
  },
  (t) => [index("idx_login_throttle_expires_at").on(t.expiresAt)],
);

// One row per (user, key): the primary key makes concurrent retries collapse onto one order.
export const orderIdempotencyKeys = pgTable(
  "order_idempotency_keys",
  {
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    key: varchar("key", { length: 255 }).notNull(),
    // SHA-256 of the normalised request, so a reuse with other items is detected.
    requestHash: varchar("request_hash", { length: 64 }).notNull(),
    orderId: uuid("order_id")
      .notNull()
      .references(() => orders.id, { onDelete: "cascade" }),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ name: "order_idempotency_keys_pkey", columns: [t.userId, t.key] })],
);

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
