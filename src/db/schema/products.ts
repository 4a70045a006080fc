import { sql } from "drizzle-orm";
import { check, index, integer, numeric, pgTable, text, uuid, varchar } from "drizzle-orm/pg-core";
import { createdAt, updatedAt } from "./columns";

export const products = pgTable(
  "products",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    name: varchar("name", { length: 255 }).notNull(),
    description: text("description"),
    price: numeric("price", { precision: 10, scale: 2 }).notNull(),
    stock: integer("stock").notNull().default(0),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index("idx_products_name").on(t.name),
    index("idx_products_price").on(t.price),
    // Additions: keyset paging by newest needs (created_at, id); substring search needs trigrams.
    index("idx_products_created_at_id").on(t.createdAt, t.id),
    index("idx_products_name_trgm").using("gin", sql`${t.name} gin_trgm_ops`),
    // Stock below zero is a bug; the database refuses it whatever the code does.
    check("products_stock_check", sql`${t.stock} >= 0`),
  ],
);
