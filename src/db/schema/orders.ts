import { sql } from "drizzle-orm";
import { check, index, integer, numeric, pgTable, uuid, varchar } from "drizzle-orm/pg-core";
import { createdAt, updatedAt } from "./columns";
import { products } from "./products";
import { users } from "./users";

export const orderStatuses = ["pending", "processing", "shipped", "delivered", "cancelled"] as const;
export type OrderStatus = (typeof orderStatuses)[number];

export const orders = pgTable(
  "orders",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id),
    status: varchar("status", { length: 50, enum: orderStatuses }).notNull(),
    total: numeric("total", { precision: 10, scale: 2 }).notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index("idx_orders_user_id").on(t.userId),
    index("idx_orders_status").on(t.status),
    index("idx_orders_created_at").on(t.createdAt),
    // Addition: orders.list pages a customer's orders newest first by (created_at, id); with this
    // index the page is a short backward index scan instead of reading and sorting all their orders.
    index("idx_orders_user_id_created_at_id").on(t.userId, t.createdAt, t.id),
    check("orders_status_check", sql`${t.status} in ('pending', 'processing', 'shipped', 'delivered', 'cancelled')`),
  ],
);

export const orderItems = pgTable(
  "order_items",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    orderId: uuid("order_id")
      .notNull()
      .references(() => orders.id, { onDelete: "cascade" }),
    productId: uuid("product_id")
      .notNull()
      .references(() => products.id),
    quantity: integer("quantity").notNull(),
    price: numeric("price", { precision: 10, scale: 2 }).notNull(),
  },
  (t) => [
    index("idx_order_items_order_id").on(t.orderId),
    index("idx_order_items_product_id").on(t.productId),
    check("order_items_quantity_check", sql`${t.quantity} > 0`),
  ],
);
