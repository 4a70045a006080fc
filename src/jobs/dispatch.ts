// The Worker-safe half of the jobs: no node:fs, child_process or Bun APIs are reachable from
// here, so the Worker's `scheduled` handler can import this module. Backups live in ./backup and
// are loaded only by the Bun host (./index.ts).

import type { JobDeps } from "../deps";
import { describeError } from "../lib/logger";
import { floorToMinute } from "./cron";
import { runDeliverMail } from "./deliver-mail";
import { runMaintenance } from "./maintenance";
import { runPruneSessions } from "./prune-sessions";
import { claimJobRun, DEFAULT_LEASE_MS, describeHost, finishJobRun, renewJobRun } from "./runs";
import { type JobName, type JobReport, jobSchedule } from "./types";

export type JobRunner = (deps: JobDeps) => Promise<JobReport>;

/** The jobs every runtime can run. */
export const edgeRunners: Partial<Record<JobName, JobRunner>> = {
  "prune-sessions": (deps) => runPruneSessions(deps),
  maintenance: (deps) => runMaintenance(deps),
  "deliver-mail": (deps) => runDeliverMail(deps),
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
  /** false when this run is done or running elsewhere, or another run of the job is still going. */
  ran: boolean;
  /** Why it did not run: "done", "running" (another live host has it), "overlap". */
  skipped?: string;
  /** The host whose run expired and was taken over. */
  takenOverFrom?: string;
  report?: JobReport;
}

export interface ClaimOptions {
  /** How long a run may go without a heartbeat before another host takes it over. */
  leaseMs?: number;
}

/**
 * Claims (job, minute) in job_runs, runs the job if the claim was ours while renewing the lease,
 * and records the outcome.
 */
export async function runClaimed(
  name: JobName,
  runner: JobRunner,
  deps: JobDeps,
  scheduledFor: Date,
  host: string,
  opts: ClaimOptions = {},
): Promise<ClaimedRun> {
  const minute = floorToMinute(scheduledFor);
  const base = { job: name, scheduledFor: minute.toISOString() };
  const leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
  const claim = await claimJobRun(deps.db, name, minute, host, leaseMs);
  if (!claim.claimed) {
    deps.logger.debug("job not run here", { ...base, reason: claim.reason, holder: claim.holder });
    deps.observability?.metrics?.jobRun(name, "skipped", deps.clock());
    return { ...base, ran: false, skipped: claim.reason };
  }
  if (claim.takenOverFrom)
    deps.logger.warn("job run taken over: its host stopped renewing the lease", { ...base, from: claim.takenOverFrom });
  deps.logger.info("job started", base);
  // Three heartbeats per lease: one lost to a slow query does not let another host in.
  const timer = setInterval(
    () => {
      renewJobRun(deps.db, name, minute, host)
        .then((mine) => {
          if (!mine) deps.logger.warn("job run lease lost to another host", base);
        })
        .catch((error) => deps.logger.error("renewing the job lease failed", { ...base, ...describeError(error) }));
    },
    Math.max(50, Math.floor(leaseMs / 3)),
  );
  (timer as { unref?: () => void }).unref?.();
  let report: JobReport;
  try {
    report = await runReported(name, runner, deps);
  } finally {
    clearInterval(timer);
  }
  await finishJobRun(deps.db, name, minute, host, report.ok, report).catch((error) =>
    deps.logger.error("recording the job run failed", { ...base, ...describeError(error) }),
  );
  deps.logger.info("job finished", { ...base, ok: report.ok });
  deps.observability?.metrics?.jobRun(name, report.ok ? "ok" : "failed", deps.clock());
  return { ...base, ran: true, report, ...(claim.takenOverFrom ? { takenOverFrom: claim.takenOverFrom } : {}) };
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
