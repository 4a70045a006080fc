export interface JobReport {
  job: string;
  ok: boolean;
  [key: string]: unknown;
}

export const jobNames = ["prune-sessions", "maintenance", "backup-full", "backup-incremental", "restore-verify", "deliver-mail"] as const;
export type JobName = (typeof jobNames)[number];

export interface JobDefinition {
  name: JobName;
  /** Default schedule, UTC (docs/operations.md, "Scheduled jobs"). */
  cron: string;
  /** Backups need pg_dump and a file system: the Bun host (or an operator's machine) only. */
  bunOnly: boolean;
}

export const jobSchedule: readonly JobDefinition[] = [
  { name: "prune-sessions", cron: "*/15 * * * *", bunOnly: false },
  { name: "maintenance", cron: "0 3 * * 0", bunOnly: false },
  { name: "backup-full", cron: "0 2 * * *", bunOnly: true },
  { name: "backup-incremental", cron: "0 */6 * * *", bunOnly: true },
  { name: "restore-verify", cron: "0 4 1 * *", bunOnly: true },
  { name: "deliver-mail", cron: "* * * * *", bunOnly: false },
];

export const isJobName = (name: unknown): name is JobName => (jobNames as readonly unknown[]).includes(name);
