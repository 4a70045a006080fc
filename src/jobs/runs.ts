// job_runs: one row per (job, scheduled minute), claimed before a job runs. A claim is a lease:
// the host that runs the job renews it (a heartbeat in the row's report) while the job runs, so
// a run whose host died (SIGKILL, power loss) is recognisable once the lease has expired, and
// another host takes it over. Every claim is one short transaction under a transaction-level
// advisory lock per job name: no session state (PgBouncer transaction mode), no transaction
// held open while the job runs, and no two runs of one job at the same time.
import { and, eq, isNotNull, isNull, lt, ne, type SQL, sql } from "drizzle-orm";
import { type Database, queryRows } from "../db/client";
import { jobRuns } from "../db/schema";
import { utcNow } from "../db/schema/columns";
import { toDbTime } from "../lib/time";

/** A run whose heartbeat is older than this is taken to have lost its host. */
export const DEFAULT_LEASE_MS = 5 * 60_000;

export type Claim = { claimed: true; takenOverFrom?: string } | { claimed: false; reason: "done" | "running" | "overlap"; holder?: string };

const dbNow = utcNow;
/** When the run last proved it was alive: its heartbeat, or its start before the first one. */
const lastSeen = sql`coalesce((${jobRuns.report}->>'heartbeatAt')::timestamp, ${jobRuns.startedAt})`;
const expiredBy = (leaseMs: number): SQL => sql`${lastSeen} < ${dbNow} - make_interval(secs => ${leaseMs / 1000})`;
const heartbeat = sql`jsonb_build_object('running', true, 'heartbeatAt', ${dbNow})`;

/**
 * Claims (job, scheduledFor) for `host`. Refused when the run is done, when another live host
 * is running it, or when any other run of the same job is still live (no overlap). A run whose
 * lease expired is taken over.
 */
export async function claimJobRun(db: Database, job: string, scheduledFor: Date, host: string, leaseMs = DEFAULT_LEASE_MS): Promise<Claim> {
  const minute = toDbTime(scheduledFor);
  return db.transaction(async (tx) => {
    // Serialises claims of one job across hosts; released at commit, so the pooler may move on.
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`job_runs:${job}`}))`);
    const live = await tx
      .select({ scheduledFor: jobRuns.scheduledFor, host: jobRuns.host })
      .from(jobRuns)
      .where(and(eq(jobRuns.job, job), isNull(jobRuns.finishedAt), ne(jobRuns.scheduledFor, minute), sql`not ${expiredBy(leaseMs)}`))
      .limit(1);
    if (live.length) return { claimed: false, reason: "overlap", holder: live[0].host } as const;

    const [existing] = await queryRows<{ host: string; finished: boolean; expired: boolean }>(
      tx,
      sql`select ${jobRuns.host} as host, ${jobRuns.finishedAt} is not null as finished, ${expiredBy(leaseMs)} as expired
            from ${jobRuns} where ${jobRuns.job} = ${job} and ${jobRuns.scheduledFor} = ${minute}`,
    );
    if (!existing) {
      await tx.insert(jobRuns).values({ job, scheduledFor: minute, host, report: heartbeat });
      return { claimed: true } as const;
    }
    if (existing.finished) return { claimed: false, reason: "done", holder: existing.host } as const;
    if (!existing.expired) return { claimed: false, reason: "running", holder: existing.host } as const;
    await tx
      .update(jobRuns)
      .set({ host, startedAt: sql`${dbNow}`, report: heartbeat })
      .where(and(eq(jobRuns.job, job), eq(jobRuns.scheduledFor, minute)));
    return { claimed: true, takenOverFrom: existing.host } as const;
  });
}

/** Renews the lease; false when the run is no longer this host's (it was taken over). */
export async function renewJobRun(db: Database, job: string, scheduledFor: Date, host: string): Promise<boolean> {
  const rows = await db
    .update(jobRuns)
    .set({ report: heartbeat })
    .where(and(eq(jobRuns.job, job), eq(jobRuns.scheduledFor, toDbTime(scheduledFor)), eq(jobRuns.host, host), isNull(jobRuns.finishedAt)))
    .returning({ job: jobRuns.job });
  return rows.length === 1;
}

/** Records the outcome, unless another host has taken the run over meanwhile. */
export async function finishJobRun(
  db: Database,
  job: string,
  scheduledFor: Date,
  host: string,
  ok: boolean,
  report: unknown,
): Promise<void> {
  await db
    .update(jobRuns)
    .set({ finishedAt: sql`${dbNow}`, ok, report: sql`${JSON.stringify(report)}::jsonb` })
    .where(and(eq(jobRuns.job, job), eq(jobRuns.scheduledFor, toDbTime(scheduledFor)), eq(jobRuns.host, host)));
}

/** Unfinished runs whose lease has expired: their host died, and they are due again. */
export async function abandonedRuns(
  db: Database,
  leaseMs = DEFAULT_LEASE_MS,
): Promise<{ job: string; scheduledFor: Date; host: string }[]> {
  const rows = await db
    .select({ job: jobRuns.job, scheduledFor: jobRuns.scheduledFor, host: jobRuns.host })
    .from(jobRuns)
    .where(and(isNull(jobRuns.finishedAt), expiredBy(leaseMs)))
    .orderBy(jobRuns.scheduledFor)
    .limit(20);
  return rows.map((r) => ({ ...r, scheduledFor: new Date(`${r.scheduledFor.replace(" ", "T")}Z`) }));
}

/** Claim rows of the scheduler older than `keepDays`: they only serve as a recent history. */
export async function pruneOldJobRuns(db: Database, now: Date, keepDays = 90): Promise<number> {
  const cutoff = toDbTime(new Date(now.getTime() - keepDays * 86_400_000));
  const rows = await db
    .delete(jobRuns)
    .where(and(lt(jobRuns.startedAt, cutoff), isNotNull(jobRuns.finishedAt)))
    .returning({ job: jobRuns.job });
  return rows.length;
}

/** Who ran a job, for the claim row: the host name and process id (Worker: "worker"). */
export function describeHost(): string {
  const p = (globalThis as { process?: { pid?: number; env?: Record<string, string | undefined> } }).process;
  const name = p?.env?.HOSTNAME ?? "host";
  return p?.pid ? `${name}:${p.pid}` : name;
}
