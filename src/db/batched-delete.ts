import { inArray, type SQL } from "drizzle-orm";
import type { PgColumn, PgTable } from "drizzle-orm/pg-core";
import type { Database } from "./client";

export interface BatchedDeleteResult {
  deleted: number;
  /** Statements run; each deletes at most `batchSize` rows, so no statement holds locks for long. */
  batches: number;
}

/**
 * Deletes the rows matching `where`, at most `batchSize` per statement (each its own short
 * transaction), until a statement finds fewer than a full batch. The pruning jobs use it so that
 * a backlog of a million expired rows never becomes one long lock or one huge WAL burst.
 */
export async function deleteInBatches(
  db: Database,
  table: PgTable,
  key: PgColumn,
  where: SQL,
  batchSize: number,
  opts: { pauseMs?: number } = {},
): Promise<BatchedDeleteResult> {
  let deleted = 0;
  let batches = 0;
  for (;;) {
    const batch = db.select({ key }).from(table).where(where).limit(batchSize);
    const rows = await db.delete(table).where(inArray(key, batch)).returning({ key });
    batches++;
    deleted += rows.length;
    if (rows.length < batchSize) return { deleted, batches };
    // A pause between full batches leaves the server (and its WAL writer, checkpointer and
    // autovacuum) time for the shop's own statements.
    if (opts.pauseMs) await new Promise((resolve) => setTimeout(resolve, opts.pauseMs));
  }
}
