import type { JobDeps } from "./scheduler";

export interface JobReport {
  job: string;
  ok: boolean;
  [key: string]: unknown;
}

/** Runs one job by its name (`bun run job <name>`). Filled in by the jobs issue. */
export async function runJobByName(name: string | undefined, _deps: JobDeps): Promise<JobReport> {
  return { job: String(name), ok: false, error: "unknown job" };
}
