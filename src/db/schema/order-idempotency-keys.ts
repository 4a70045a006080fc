// A table added to the design (listed in docs/architecture.md under "Schema additions").
import { pgTable, primaryKey, uuid, varchar } from "drizzle-orm/pg-core";
import { createdAt } from "./columns";
import { orders } from "./orders";
import { users } from "./users";

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
