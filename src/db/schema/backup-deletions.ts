// A table added to the design (listed in docs/architecture.md under "Schema additions").
import { sql } from "drizzle-orm";
import { bigint, customType, jsonb, pgTable, timestamp, varchar } from "drizzle-orm/pg-core";
import { utcNow } from "./columns";

// A 64-bit transaction id: with the snapshot a backup records, it says exactly whether that
// backup already saw a deletion (`pg_visible_in_snapshot`), epoch included, so no wraparound.
const xid8 = customType<{ data: string; driverData: string }>({ dataType: () => "xid8" });

// What incremental backups cannot see in the tables themselves: which rows are gone. Filled by
// statement-level AFTER DELETE / AFTER TRUNCATE triggers on every backed-up table (migration
// 0008): one row per deleting statement, its keys as a JSON array, so a batch of 5,000 expired
// sessions is one insert, not 5,000. `keys` null = the table was truncated. Read by the next
// incremental, pruned by the backup jobs once no backup chain can need it; never backed up.
export const backupDeletions = pgTable("backup_deletions", {
  id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
  tableName: varchar("table_name", { length: 63 }).notNull(),
  keys: jsonb("keys"),
  xid: xid8("xid").notNull().default(sql`pg_current_xact_id()`),
  deletedAt: timestamp("deleted_at", { mode: "string" }).notNull().default(utcNow),
});
