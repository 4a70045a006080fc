// The Worker-safe half of the jobs: no node:fs, child_process or Bun APIs are reachable from
// here, so the Worker's `scheduled` handler can import this module. Backups live in ./backup and
// are loaded only by the Bun host (./index.ts).
import { describeError } from "../lib/logger";
import { floorToMinute } from "./cron";
import { runMaintenance } from "./maintenance";
import { runPruneSessions } from "./prune-sessions";
import { claimJobRun, describeHost, finishJobRun } from "./runs";
import { jobSchedule, type JobDeps, type JobName, type JobReport } from "./types";

export type JobRunner = (deps: JobDeps) => Promise<JobReport>;

/** The jobs every runtime can run. */
export const edgeRunners: Partial<Record<JobName, JobRunner>> = {
  "prune-sessions": (deps) => runPruneSessions(deps),
  maintenance: (deps) => runMaintenance(deps),
};

/** The job a cron expression names (exact text, as in wrangler.toml and the jobs table). */
export function jobForCron(cron: string, opts: { includeBunOnly?: boolean } = {}): JobName | undefined {
  const normalised = cron.trim().split(/\s+/).join(" ");
  return jobSchedule.find((j) => j.cron === normalised && (opts.includeBunOnly || !j.bunOnly))?.name;
}

/** Runs a job and turns a throw into a failed report with an error log line. */
export async function runReported(name: string, runner: JobRunner, deps: JobDeps): Promise<JobReport> {
  try {
    const report = await runner(deps);
    if (!report.ok) deps.logger.error("job failed", { job: name, report });
    return report;
  } catch (error) {
    const details = describeError(error);
    deps.logger.error("job failed", { job: name, ...details });
    return { job: name, ok: false, error: String(details.error) };
  }
}

export interface ClaimedRun {
  job: string;
  scheduledFor: string;
  /** false when another host (or an earlier tick) already ran this job for this minute. */
  ran: boolean;
  report?: JobReport;
}

/** Claims (job, minute) in job_runs, runs the job if the claim was ours, records the outcome. */
export async function runClaimed(
  name: JobName,
  runner: JobRunner,
  deps: JobDeps,
  scheduledFor: Date,
  host: string,
): Promise<ClaimedRun> {
  const minute = floorToMinute(scheduledFor);
  const base = { job: name, scheduledFor: minute.toISOString() };
  if (!(await claimJobRun(deps.db, name, minute, host))) {
    deps.logger.debug("job already claimed", base);
    return { ...base, ran: false };
  }
  deps.logger.info("job started", base);
  const report = await runReported(name, runner, deps);
  await finishJobRun(deps.db, name, minute, report.ok, report).catch((error) =>
    deps.logger.error("recording the job run failed", { ...base, ...describeError(error) }),
  );
  deps.logger.info("job finished", { ...base, ok: report.ok });
  return { ...base, ran: true, report };
}

/**
 * The Worker's `scheduled` handler: maps the trigger's cron to its job and runs it once per
 * scheduled minute across every runtime that shares the database. Backup crons are not the
 * Worker's (they need pg_dump and a disk) and come back as a failed report.
 */
export async function runScheduledJob(cron: string, deps: JobDeps, scheduledAt: Date = deps.clock()): Promise<JobReport> {
  const name = jobForCron(cron);
  const runner = name ? edgeRunners[name] : undefined;
  if (!name || !runner) {
    deps.logger.error("no job for this cron", { cron });
    return { job: "unknown", ok: false, error: `no Worker job is scheduled as "${cron}"` };
  }
  const run = await runClaimed(name, runner, deps, scheduledAt, "worker");
  return run.report ?? { job: name, ok: true, skipped: "already run for this minute by another host" };
}

export { describeHost };
