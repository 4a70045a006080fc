// The Bun host's in-process scheduler: wakes at each UTC minute, runs the jobs whose cron
// matches, and relies on job_runs claims so that any number of hosts run each job once.

import type { JobDeps } from "../deps";
import { describeError } from "../lib/logger";
import { cronMatches, floorToMinute, parseCron } from "./cron";
import { type ClaimedRun, type ClaimOptions, describeHost, runClaimed } from "./dispatch";
import { loadRunner } from "./index";
import { abandonedRuns } from "./runs";
import { type JobDefinition, jobSchedule } from "./types";

/** A host that was asleep (suspended laptop, long GC) catches up at most this many minutes. */
const MAX_CATCH_UP_MINUTES = 5;

export interface Scheduler {
  /**
   * Runs every job due in `minute` (claims first), and again any run whose host died (its lease
   * expired); resolves when they have finished.
   */
  tick(minute: Date): Promise<ClaimedRun[]>;
}

export function createScheduler(deps: JobDeps, opts: { jobs?: readonly JobDefinition[]; host?: string } & ClaimOptions = {}): Scheduler {
  const jobs = (opts.jobs ?? jobSchedule).map((j) => ({ ...j, schedule: parseCron(j.cron) }));
  const host = opts.host ?? describeHost();
  return {
    async tick(minute) {
      const due = jobs.filter((j) => cronMatches(j.schedule, minute));
      const claim = { leaseMs: opts.leaseMs };
      const known = new Set(jobs.map((j) => j.name as string));
      const abandoned = (await abandonedRuns(deps.db, opts.leaseMs)).filter((r) => known.has(r.job));
      return Promise.all([
        ...due.map(async (j) => runClaimed(j.name, await loadRunner(j.name), deps, minute, host, claim)),
        ...abandoned.map(async (r) =>
          runClaimed(r.job as JobDefinition["name"], await loadRunner(r.job as JobDefinition["name"]), deps, r.scheduledFor, host, claim),
        ),
      ]);
    },
  };
}

/** Starts the in-process scheduler of the Bun host; returns a function that stops it. */
export function startScheduler(deps: JobDeps): () => void {
  const scheduler = createScheduler(deps);
  let last = floorToMinute(deps.clock()).getTime();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  const arm = () => {
    if (stopped) return;
    // A second past the minute boundary, so a slightly fast timer does not land in the old minute.
    const wait = 60_000 - (deps.clock().getTime() % 60_000) + 1_000;
    timer = setTimeout(fire, wait);
    (timer as { unref?: () => void }).unref?.();
  };
  const fire = () => {
    const now = floorToMinute(deps.clock()).getTime();
    const from = Math.max(last + 60_000, now - (MAX_CATCH_UP_MINUTES - 1) * 60_000);
    for (let t = from; t <= now; t += 60_000) {
      // Jobs run in the background: a long backup must not delay the next minute's tick.
      scheduler.tick(new Date(t)).catch((error) => deps.logger.error("scheduler tick failed", describeError(error)));
    }
    if (now > last) last = now;
    arm();
  };
  arm();
  deps.logger.info("scheduler started", { jobs: jobSchedule.map((j) => `${j.name} ${j.cron}`) });
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
