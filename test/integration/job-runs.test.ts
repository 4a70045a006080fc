// src/jobs/runs.ts and runClaimed: a claim is a lease; a dead host's run is taken over after
// it expires; a job never overlaps itself, whichever hosts race for it.
import { beforeEach, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createPostgresDatabase, type Database, queryRows } from "../../src/db/client";
import type { JobDeps } from "../../src/deps";
import { type JobRunner, runClaimed } from "../../src/jobs/dispatch";
import { abandonedRuns, claimJobRun, finishJobRun } from "../../src/jobs/runs";
import { createScheduler } from "../../src/jobs/scheduler";
import { createTestClock, createTestDeps } from "../support/app";
import { getTestDatabase, onPostgres, prepareStatements, resetDatabase } from "../support/db";

const handle = await getTestDatabase();
beforeEach(async () => {
  await resetDatabase(handle);
  await handle.db.execute(sql`delete from job_runs`);
});

const MINUTE = new Date("2026-11-25T10:15:00.000Z");
const dbTime = (d: Date) => d.toISOString().replace("T", " ").replace("Z", "");
const LEASE_MS = 400;

function deps(db: Database = handle.db): JobDeps {
  return { ...createTestDeps(db, { clock: createTestClock(MINUTE) }), handle };
}

/** A job that takes `ms` and counts how often it started, and how many copies ran at once. */
function slowJob(ms: number) {
  const stats = { started: 0, running: 0, maxRunning: 0 };
  const runner: JobRunner = async () => {
    stats.started++;
    stats.maxRunning = Math.max(stats.maxRunning, ++stats.running);
    await Bun.sleep(ms);
    stats.running--;
    return { job: "prune-sessions", ok: true };
  };
  return { runner, stats };
}

/** A run whose host died mid-job: claimed, never finished, no heartbeat since `secondsAgo`. */
async function abandoned(minute: Date, secondsAgo: number, host = "dead-host:1") {
  await handle.db.execute(
    sql`insert into job_runs (job, scheduled_for, started_at, host)
        values ('prune-sessions', ${dbTime(minute)}, (now() at time zone 'utc') - make_interval(secs => ${secondsAgo}), ${host})`,
  );
}

const rowOf = async (minute: Date) =>
  (
    await queryRows<{ host: string; finished: boolean; ok: boolean | null }>(
      handle.db,
      sql`select host, finished_at is not null as finished, ok from job_runs where job = 'prune-sessions' and scheduled_for = ${dbTime(minute)}`,
    )
  )[0];

describe("job runs: happy path", () => {
  test("a run whose host died is run again by the next tick once its lease has expired", async () => {
    await abandoned(MINUTE, 3600);
    const later = new Date(MINUTE.getTime() + 60_000);
    const runs = await createScheduler(deps(), { host: "host-b:2", leaseMs: LEASE_MS }).tick(later);
    const retaken = runs.find((r) => r.scheduledFor === MINUTE.toISOString());
    expect(retaken).toMatchObject({ ran: true, takenOverFrom: "dead-host:1", report: { ok: true } });
    expect(await rowOf(MINUTE)).toMatchObject({ host: "host-b:2", finished: true, ok: true });
    expect(await abandonedRuns(handle.db, LEASE_MS)).toEqual([]);
  });

  test("a long run renews its lease: another host does not take it over while it runs", async () => {
    const job = slowJob(LEASE_MS * 4);
    const first = runClaimed("prune-sessions", job.runner, deps(), MINUTE, "host-a:1", { leaseMs: LEASE_MS });
    await Bun.sleep(LEASE_MS * 2);
    // Past the lease, but heartbeats kept it alive.
    expect(await abandonedRuns(handle.db, LEASE_MS)).toEqual([]);
    const second = await runClaimed("prune-sessions", job.runner, deps(), MINUTE, "host-b:2", { leaseMs: LEASE_MS });
    expect(second).toMatchObject({ ran: false, skipped: "running" });
    expect(await first).toMatchObject({ ran: true });
    expect(job.stats.started).toBe(1);
    expect(await rowOf(MINUTE)).toMatchObject({ host: "host-a:1", finished: true, ok: true });
  });
});

describe("job runs: errors", () => {
  test("a job that runs past its next slot does not overlap itself: the next minute is skipped", async () => {
    const job = slowJob(LEASE_MS * 3);
    const next = new Date(MINUTE.getTime() + 60_000);
    const first = runClaimed("prune-sessions", job.runner, deps(), MINUTE, "host-a:1", { leaseMs: LEASE_MS });
    await Bun.sleep(100);
    const overlapping = await runClaimed("prune-sessions", job.runner, deps(), next, "host-a:1", { leaseMs: LEASE_MS });
    expect(overlapping).toMatchObject({ ran: false, skipped: "overlap" });
    await first;
    expect(job.stats).toMatchObject({ started: 1, maxRunning: 1 });
  });

  test("a finished run is not run again, however often it is claimed", async () => {
    const job = slowJob(1);
    expect((await runClaimed("prune-sessions", job.runner, deps(), MINUTE, "a", { leaseMs: LEASE_MS })).ran).toBe(true);
    await Bun.sleep(LEASE_MS * 2);
    expect(await runClaimed("prune-sessions", job.runner, deps(), MINUTE, "b", { leaseMs: LEASE_MS })).toMatchObject({
      ran: false,
      skipped: "done",
    });
    expect(job.stats.started).toBe(1);
  });
});

describe("job runs: security", () => {
  test("a host that lost its run to a takeover cannot record its outcome over the new owner's", async () => {
    await abandoned(MINUTE, 3600, "zombie:1");
    expect(await claimJobRun(handle.db, "prune-sessions", MINUTE, "heir:2", LEASE_MS)).toEqual({
      claimed: true,
      takenOverFrom: "zombie:1",
    });
    await finishJobRun(handle.db, "prune-sessions", MINUTE, "zombie:1", false, { job: "prune-sessions", ok: false });
    expect(await rowOf(MINUTE)).toMatchObject({ host: "heir:2", finished: false });
    await finishJobRun(handle.db, "prune-sessions", MINUTE, "heir:2", true, { job: "prune-sessions", ok: true });
    expect(await rowOf(MINUTE)).toMatchObject({ host: "heir:2", finished: true, ok: true });
  });
});

describe.if(onPostgres)("job runs: two hosts on one database (Postgres through the pooler)", () => {
  test("two hosts racing a long job, for the same minute and for consecutive minutes: it runs once at a time", async () => {
    const other = await createPostgresDatabase({ url: handle.url!, poolMax: 5, prepare: prepareStatements });
    try {
      const job = slowJob(LEASE_MS * 3);
      const next = new Date(MINUTE.getTime() + 60_000);
      const runs = await Promise.all([
        runClaimed("prune-sessions", job.runner, deps(), MINUTE, "host-a:1", { leaseMs: LEASE_MS }),
        runClaimed("prune-sessions", job.runner, { ...deps(other.db), handle: other }, MINUTE, "host-b:2", { leaseMs: LEASE_MS }),
        runClaimed("prune-sessions", job.runner, { ...deps(other.db), handle: other }, next, "host-b:2", { leaseMs: LEASE_MS }),
      ]);
      expect(runs.filter((r) => r.ran)).toHaveLength(1);
      expect(job.stats).toMatchObject({ started: 1, maxRunning: 1 });
    } finally {
      await other.close();
    }
  });
});
