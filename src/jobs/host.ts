// What a serving host (Bun or Deno) runs beside its requests, started once it listens, so that a
// start that failed to listen schedules nothing.
import type { JobDeps } from "../deps";
import { serveJobsThroughLock } from "./remote";
import { startScheduler } from "./scheduler";

/** The scheduler (unless JOBS=false) and, on the embedded database, jobs asked for by the CLI. */
export function startHostJobs(deps: JobDeps): (() => void) | undefined {
  const stopScheduler = deps.env.JOBS ? startScheduler(deps) : undefined;
  if (deps.handle.lock) serveJobsThroughLock(deps.handle.lock, deps);
  return stopScheduler;
}
