import type { JobDeps } from "../deps";
import { pruneExpiredAccountTokens } from "../services/account-tokens";
import { pruneAuditEvents } from "../services/audit";
import { pruneExpiredThrottles } from "../services/login-throttle";
import { pruneMailOutbox } from "../services/mail";
import { PRUNE_BATCH_SIZE, pruneExpiredSessions } from "../services/sessions";
import { pruneOldJobRuns } from "./runs";
import type { JobReport } from "./types";

export async function runPruneSessions(deps: JobDeps, batchSize = PRUNE_BATCH_SIZE): Promise<JobReport> {
  const now = deps.clock();
  const sessions = await pruneExpiredSessions(deps.db, now, batchSize);
  const loginThrottleRows = await pruneExpiredThrottles(deps.db, now, batchSize);
  const jobRuns = await pruneOldJobRuns(deps.db, now);
  const auditEventsDeleted = await pruneAuditEvents(deps.db, now, deps.env.AUDIT_RETENTION_DAYS, batchSize);
  const accountTokensDeleted = await pruneExpiredAccountTokens(deps.db, now);
  const mailOutboxRowsDeleted = await pruneMailOutbox(deps.db, now);
  return {
    job: "prune-sessions",
    ok: true,
    sessionsDeleted: sessions.deleted,
    sessionBatches: sessions.batches,
    loginThrottleRowsDeleted: loginThrottleRows,
    jobRunsDeleted: jobRuns,
    auditEventsDeleted,
    accountTokensDeleted,
    mailOutboxRowsDeleted,
  };
}
