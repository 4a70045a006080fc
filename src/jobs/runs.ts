import { sql } from "drizzle-orm";
import { queryRows, type Database } from "../db/client";
import { toDbTime } from "../lib/time";


/**
 * Claims (job, scheduledFor) for this host. The primary key lets exactly one of any number of
 * concurrent hosts insert the row; the others get no row back and skip the run. This needs no
 * session state (PgBouncer transaction mode) and no transaction held open while the job runs.
 */
export async function claimJobRun(db: Database, job: string, scheduledFor: Date, host: string): Promise<boolean> {
  const rows = await queryRows<{ job: string }>(
    db,
    sql`insert into job_runs (job, scheduled_for, host) values (${job}, ${toDbTime(scheduledFor)}, ${host})
        on conflict do nothing returning job`,
  );
  return rows.length === 1;
}

export async function finishJobRun(db: Database, job: string, scheduledFor: Date, ok: boolean, report: unknown): Promise<void> {
  await db.execute(
    sql`update job_runs set finished_at = (now() at time zone 'utc'), ok = ${ok}, report = ${JSON.stringify(report)}::jsonb
         where job = ${job} and scheduled_for = ${toDbTime(scheduledFor)}`,
  );
}

/** Who ran a job, for the claim row: the host name and process id (Worker: "worker"). */
export function describeHost(): string {
  const p = (globalThis as { process?: { pid?: number; env?: Record<string, string | undefined> } }).process;
  const name = p?.env?.HOSTNAME ?? "host";
  return p?.pid ? `${name}:${p.pid}` : name;
}
