import { sql } from "drizzle-orm";
import { check, index, pgTable, uniqueIndex, uuid, varchar } from "drizzle-orm/pg-core";
import { createdAt, updatedAt } from "./columns";

export const userRoles = ["customer", "admin"] as const;
export type UserRole = (typeof userRoles)[number];

export const users = pgTable(
  "users",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    email: varchar("email", { length: 255 }).notNull(),
    passwordHash: varchar("password_hash", { length: 255 }).notNull(),
    // Addition to the design: admin accounts need a role.
    role: varchar("role", { length: 20, enum: userRoles }).notNull().default("customer"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("idx_users_email").on(t.email),
    index("idx_users_created_at").on(t.createdAt),
    check("users_role_check", sql`${t.role} in ('customer', 'admin')`),
  ],
);
