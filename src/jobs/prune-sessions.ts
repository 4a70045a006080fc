import { pruneExpiredThrottles } from "../services/login-throttle";
import { PRUNE_BATCH_SIZE, pruneExpiredSessions } from "../services/sessions";
import { pruneOldJobRuns } from "./runs";
import type { JobDeps } from "../deps";
import type { JobReport } from "./types";

export async function runPruneSessions(deps: JobDeps, batchSize = PRUNE_BATCH_SIZE): Promise<JobReport> {
  const now = deps.clock();
  const sessions = await pruneExpiredSessions(deps.db, now, batchSize);
  const loginThrottleRows = await pruneExpiredThrottles(deps.db, now, batchSize);
  const jobRuns = await pruneOldJobRuns(deps.db, now);
  return {
    job: "prune-sessions",
    ok: true,
    sessionsDeleted: sessions.deleted,
    sessionBatches: sessions.batches,
    loginThrottleRowsDeleted: loginThrottleRows,
    jobRunsDeleted: jobRuns,
  };
}
