// The Bun host's (and CLI's) view of the jobs: the edge jobs plus the backups, which are loaded
// on demand so that nothing here drags node:fs or child_process into a Worker bundle that only
// imports ./dispatch.

import type { JobDeps } from "../deps";
import { edgeRunners, type JobRunner, runReported } from "./dispatch";
import { isJobName, type JobName, type JobReport, jobNames } from "./types";

/** The runner of any job, backups included (Bun host and CLI only). */
export async function loadRunner(name: JobName): Promise<JobRunner> {
  const edge = edgeRunners[name];
  if (edge) return edge;
  const backup = await import("./backup");
  switch (name) {
    case "backup-full":
      return (deps) => backup.runBackupFull(deps);
    case "backup-incremental":
      return (deps) => backup.runBackupIncremental(deps);
    case "restore-verify":
      return (deps) => backup.runRestoreVerify(deps);
  }
  throw new Error(`no runner for ${name}`);
}

/** Runs one job by its name now (`bun run job <name>`), outside the schedule. */
export async function runJobByName(name: string | undefined, deps: JobDeps): Promise<JobReport> {
  if (!isJobName(name)) {
    return { job: String(name), ok: false, error: `unknown job: use one of ${jobNames.join(", ")}` };
  }
  return runReported(name, await loadRunner(name), deps);
}
