import { lt } from "drizzle-orm";
import { type BatchedDeleteResult, deleteInBatches } from "../db/batched-delete";
import type { Database } from "../db/client";
import { sessions } from "../db/schema";
import { toDbTime } from "../lib/time";

// Measured (bench/results/2026-12-02-prune-sessions.md, `npm run bench:prune`): a million
// expired sessions go in ~73 s in 201 batches of 5,000 through PgBouncer, and products.byId's p99
// under load was 1.17× its idle p99 during the prune and 0.88× in the minute after (target
// ≤ 1.5×). Batches of 1,000 with a 50 ms pause took 2.2× as long for no better p99, and a slower
// autovacuum on the session tables made the minute after worse (up to 1.74×), so neither is set.
// No env setting: nothing measured calls for an operator to tune it.
export const PRUNE_BATCH_SIZE = 5_000;
/** Pause between full batches (none: see above); deleteInBatches supports one for the bench. */
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
