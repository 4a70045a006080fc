import { lt } from "drizzle-orm";
import { type BatchedDeleteResult, deleteInBatches } from "../db/batched-delete";
import type { Database } from "../db/client";
import { sessions } from "../db/schema";
import { toDbTime } from "../lib/time";

export const PRUNE_BATCH_SIZE = 5_000;
export const PRUNE_PAUSE_MS = 0;

/** Deletes sessions that expired before `now`, in batches (see deleteInBatches). */
export function pruneExpiredSessions(
  db: Database,
  now: Date,
  batchSize = PRUNE_BATCH_SIZE,
  pauseMs = PRUNE_PAUSE_MS,
): Promise<BatchedDeleteResult> {
  return deleteInBatches(db, sessions, sessions.id, lt(sessions.expiresAt, toDbTime(now)), batchSize, { pauseMs });
}
