import { sql } from "drizzle-orm";
import { timestamp } from "drizzle-orm/pg-core";

// The design's columns are TIMESTAMP without time zone and hold UTC. `now()` alone would be
// converted to the session's TimeZone, so every default and every write uses this expression.
export const utcNow = sql`(now() at time zone 'utc')`;

// Timestamps are read as the database's own text (microsecond precision) so keyset cursors
// compare exactly; they are turned into ISO strings only at the API edge.
export const createdAt = () => timestamp("created_at", { mode: "string" }).notNull().default(utcNow);
export const updatedAt = () => timestamp("updated_at", { mode: "string" }).notNull().default(utcNow);
