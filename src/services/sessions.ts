import { sql } from "drizzle-orm";
import type { Database } from "../db/client";
import { queryRows } from "../db/client";
import { sessions } from "../db/schema";
import { toDbTime } from "../lib/time";

export const PRUNE_BATCH_SIZE = 5_000;


export interface PruneResult {
  deleted: number;
  /** Statements run; each deletes at most `batchSize` rows, so no statement holds locks for long. */
  batches: number;
}

/**
 * Deletes sessions that expired before `now`, at most `batchSize` rows per statement (each its
 * own short transaction), until a statement finds fewer than a full batch.
 */
export async function pruneExpiredSessions(db: Database, now: Date, batchSize = PRUNE_BATCH_SIZE): Promise<PruneResult> {
  const cutoff = toDbTime(now);
  let deleted = 0;
  let batches = 0;
  for (;;) {
    const rows = await queryRows<{ id: string }>(
      db,
      sql`delete from ${sessions} where ${sessions.id} in (
            select ${sessions.id} from ${sessions} where ${sessions.expiresAt} < ${cutoff} limit ${batchSize})
          returning ${sessions.id} as id`,
    );
    batches++;
    deleted += rows.length;
    if (rows.length < batchSize) return { deleted, batches };
  }
}

/** Claim rows of the scheduler older than `keepDays`: they only serve as a recent history. */
export async function pruneOldJobRuns(db: Database, now: Date, keepDays = 90): Promise<number> {
  const cutoff = toDbTime(new Date(now.getTime() - keepDays * 86_400_000));
  const rows = await queryRows<{ job: string }>(
    db,
    sql`delete from job_runs where started_at < ${cutoff} and finished_at is not null returning job`,
  );
  return rows.length;
}
