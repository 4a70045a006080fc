// Running a job now while a server owns the embedded database: the CLI cannot open DATA_DIR
// (one owner at a time), so it asks the owner over DATA_DIR's lock socket, and the server runs
// the job in its own process, on its own connection, exactly as `npm run job` would. Reaching
// the socket needs the file permissions of DATA_DIR itself, so nobody gains anything by it who
// could not already read the database files.
import { askDataDirOwner, type DataDirLock } from "../db/data-dir-lock";
import type { JobDeps } from "../deps";
import { describeError } from "../lib/logger";
import { runJobByName } from "./index";
import type { JobReport } from "./types";

/** A job may run for as long as a backup of a large database takes. */
const JOB_ANSWER_TIMEOUT_MS = 6 * 60 * 60 * 1000;

export function serveJobsThroughLock(lock: DataDirLock, deps: JobDeps): void {
  lock.serve(async (request) => {
    if (request.op !== "job") return { error: `unknown request: ${String(request.op).slice(0, 40)}` };
    const name = typeof request.name === "string" ? request.name : undefined;
    deps.logger.info("job requested through DATA_DIR", { job: name?.slice(0, 40) });
    try {
      return await runJobByName(name, deps);
    } catch (error) {
      deps.logger.error("job failed", describeError(error));
      return { job: String(name), ok: false, error: "the job failed: see the server log" };
    }
  });
}

/**
 * Asks the process that holds DATA_DIR to run `name`; `undefined` when no process holds it
 * (the CLI then opens the database itself).
 */
export async function runJobThroughOwner(dataDir: string, name: string): Promise<JobReport | undefined> {
  const answer = await askDataDirOwner(dataDir, { op: "job", name }, JOB_ANSWER_TIMEOUT_MS);
  if (!answer) return undefined;
  const reply = answer.reply as (Partial<JobReport> & { error?: string }) | undefined;
  if (!reply || typeof reply !== "object") return { job: name, ok: false, error: "the process holding DATA_DIR did not answer" };
  if (typeof reply.ok !== "boolean") return { job: name, ok: false, error: reply.error ?? "the process holding DATA_DIR cannot run jobs" };
  return reply as JobReport;
}
