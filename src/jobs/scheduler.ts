import type { DatabaseHandle } from "../db/client";
import type { AppDeps } from "../trpc/context";

export interface JobDeps extends AppDeps {
  handle: DatabaseHandle;
}

/** Starts the in-process scheduler of the Bun host; returns a function that stops it. */
export function startScheduler(_deps: JobDeps): () => void {
  // Filled in by the jobs issue.
  return () => {};
}
