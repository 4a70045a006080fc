// A table added to the design (listed in docs/architecture.md under "Schema additions").
import { index, integer, pgTable, timestamp, varchar } from "drizzle-orm/pg-core";

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
