import { beforeEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { sql } from "drizzle-orm";
import { createPostgresDatabase, queryRows } from "../../src/db/client";
import type { JobDeps } from "../../src/deps";
import { runJobByName } from "../../src/jobs";
import { jobForCron, runScheduledJob } from "../../src/jobs/dispatch";
import { runMaintenance } from "../../src/jobs/maintenance";
import { runPruneSessions } from "../../src/jobs/prune-sessions";
import { createScheduler } from "../../src/jobs/scheduler";
import { jobSchedule } from "../../src/jobs/types";
import { createLogger } from "../../src/lib/logger";
import { pruneExpiredSessions } from "../../src/services/sessions";
import { createTestClock, createTestDeps } from "../support/app";
import { getTestDatabase, onPostgres, prepareStatements, resetDatabase } from "../support/db";

const handle = await getTestDatabase();
beforeEach(async () => {
  await resetDatabase(handle);
  await handle.db.execute(sql`delete from job_runs`);
});

const NOW = new Date("2026-11-25T10:15:00.000Z");
const dbTime = (d: Date) => d.toISOString().replace("T", " ").replace("Z", "");

function jobDeps(overrides: Partial<JobDeps> = {}): JobDeps {
  return { ...createTestDeps(handle, { clock: createTestClock(NOW) }), ...overrides };
}

async function insertUser(email = `u-${crypto.randomUUID()}@example.com`): Promise<string> {
  const [row] = await queryRows<{ id: string }>(
    handle.db,
    sql`insert into users (email, password_hash) values (${email}, 'x') returning id`,
  );
  return row.id;
}

async function insertSessions(userId: string, count: number, expiresAt: Date): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const [row] = await queryRows<{ id: string }>(
      handle.db,
      sql`insert into sessions (user_id, token_hash, expires_at) values (${userId}, ${`hash-${i}`}, ${dbTime(expiresAt)}) returning id`,
    );
    ids.push(row.id);
  }
  return ids;
}

const sessionIds = async () => (await queryRows<{ id: string }>(handle.db, sql`select id from sessions order by id`)).map((r) => r.id);

/** The crons of wrangler.toml's [triggers], read from the file itself. */
function wranglerCrons(): string[] {
  const text = readFileSync(new URL("../../wrangler.toml", import.meta.url), "utf8");
  const triggers = /\[triggers\][^[]*?crons\s*=\s*\[([^\]]*)\]/s.exec(text);
  if (!triggers) throw new Error("wrangler.toml has no [triggers] crons");
  return [...triggers[1].matchAll(/"([^"]+)"/g)].map((m) => m[1]);
}

describe("jobs: prune-sessions", () => {
  test("deletes exactly the expired sessions, in batches, and leaves live ones alone", async () => {
    const user = await insertUser();
    await insertSessions(user, 10, new Date(NOW.getTime() - 1_000));
    const live = await insertSessions(user, 4, new Date(NOW.getTime() + 60_000));
    // Expiring exactly now is not yet expired.
    live.push(...(await insertSessions(user, 1, NOW)));
    const report = await runPruneSessions(jobDeps(), 3);
    expect(report.ok).toBe(true);
    expect(report.sessionsDeleted).toBe(10);
    // 3 + 3 + 3 + 1: four bounded statements.
    expect(report.sessionBatches).toBe(4);
    expect(await sessionIds()).toEqual([...live].sort());
  });

  test("a pause between batches waits after each full batch only, and deletes the same rows", async () => {
    const user = await insertUser();
    await insertSessions(user, 7, new Date(NOW.getTime() - 1_000));
    const live = await insertSessions(user, 2, new Date(NOW.getTime() + 60_000));
    const started = performance.now();
    // 3 + 3 + 1: two full batches, so two pauses of 150 ms (none after the last).
    const result = await pruneExpiredSessions(handle.db, NOW, 3, 150);
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(result).toEqual({ deleted: 7, batches: 3 });
    expect(await sessionIds()).toEqual([...live].sort());
  });

  test("also drops expired login-throttle rows and keeps current ones", async () => {
    await handle.db.execute(sql`insert into login_throttle (key, failures, window_started_at, expires_at) values
      ('email:old@example.com', 3, ${dbTime(new Date(NOW.getTime() - 3_600_000))}, ${dbTime(new Date(NOW.getTime() - 1_000))}),
      ('email:new@example.com', 3, ${dbTime(NOW)}, ${dbTime(new Date(NOW.getTime() + 900_000))})`);
    const report = await runPruneSessions(jobDeps());
    expect(report.loginThrottleRowsDeleted).toBe(1);
    const keys = await queryRows<{ key: string }>(handle.db, sql`select key from login_throttle`);
    expect(keys.map((k) => k.key)).toEqual(["email:new@example.com"]);
  });

  test("with nothing to prune it reports zero in one statement", async () => {
    const report = await runPruneSessions(jobDeps());
    expect(report).toMatchObject({ ok: true, sessionsDeleted: 0, sessionBatches: 1 });
  });
});

describe("jobs: maintenance", () => {
  test("vacuums the five tables and reports sizes and the orders count", async () => {
    const report = await runMaintenance(jobDeps());
    expect(report.ok).toBe(true);
    expect(report.vacuumed).toEqual(["users", "products", "orders", "order_items", "sessions"]);
    expect(Object.keys(report.tableBytes as object).sort()).toEqual(["order_items", "orders", "products", "sessions", "users"]);
    for (const bytes of Object.values(report.tableBytes as Record<string, number>)) expect(bytes).toBeGreaterThan(0);
    expect(report.ordersRows).toBe(0);
    expect(report.warning).toBeUndefined();
  });

  test("warns in its report and its log when orders passes the threshold", async () => {
    const user = await insertUser();
    for (let i = 0; i < 3; i++) {
      await handle.db.execute(sql`insert into orders (user_id, status, total) values (${user}, 'pending', '1.00')`);
    }
    const lines: string[] = [];
    const logger = createLogger("debug", (l) => lines.push(l));
    const below = await runMaintenance(jobDeps({ logger }), { ordersThreshold: 3 });
    expect(below.warning).toBeUndefined();
    const above = await runMaintenance(jobDeps({ logger }), { ordersThreshold: 2 });
    expect(above.ordersRows).toBe(3);
    expect(String(above.warning)).toContain("partitioning");
    const warnings = lines.map((l) => JSON.parse(l)).filter((l) => l.level === "warn");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ msg: "orders passed the partitioning threshold", ordersRows: 3 });
  });
});

describe("jobs: dispatcher", () => {
  test("every cron in wrangler.toml maps to a Worker job, and every Worker job has its cron there", () => {
    const crons = wranglerCrons();
    expect(crons.length).toBeGreaterThan(0);
    for (const cron of crons) {
      const job = jobForCron(cron);
      expect(job).toBeDefined();
      expect(jobSchedule.find((j) => j.name === job)?.bunOnly).toBe(false);
    }
    const workerJobs = jobSchedule.filter((j) => !j.bunOnly);
    expect(workerJobs.map((j) => j.cron).sort()).toEqual([...crons].sort());
  });

  test("the schedule is the jobs table of docs/operations.md", () => {
    expect(Object.fromEntries(jobSchedule.map((j) => [j.name, j.cron]))).toEqual({
      "prune-sessions": "*/15 * * * *",
      maintenance: "0 3 * * 0",
      "backup-full": "0 2 * * *",
      "backup-incremental": "0 */6 * * *",
      "restore-verify": "0 4 1 * *",
      "deliver-mail": "* * * * *",
    });
  });

  test("a scheduled run happens once per minute, however many times the trigger fires", async () => {
    const user = await insertUser();
    await insertSessions(user, 2, new Date(NOW.getTime() - 1_000));
    const first = await runScheduledJob("*/15 * * * *", jobDeps(), NOW);
    expect(first).toMatchObject({ job: "prune-sessions", ok: true, sessionsDeleted: 2 });
    await insertSessions(user, 1, new Date(NOW.getTime() - 1_000));
    const again = await runScheduledJob("*/15 * * * *", jobDeps(), new Date(NOW.getTime() + 30_000));
    expect(again.skipped).toBeDefined();
    expect((await sessionIds()).length).toBe(1);
    const runs = await queryRows<{ job: string; ok: boolean; finished_at: string | null }>(
      handle.db,
      sql`select job, ok, finished_at from job_runs`,
    );
    expect(runs).toHaveLength(1);
    expect(runs[0].ok).toBe(true);
    expect(runs[0].finished_at).not.toBeNull();
  });

  test("errors: an unknown cron or a backup cron is refused by the Worker dispatcher", async () => {
    expect((await runScheduledJob("1 2 3 4 5", jobDeps(), NOW)).ok).toBe(false);
    expect((await runScheduledJob("0 2 * * *", jobDeps(), NOW)).ok).toBe(false);
    expect(jobForCron("0 2 * * *", { includeBunOnly: true })).toBe("backup-full");
  });

  test("errors: an unknown job name by hand fails and names the jobs", async () => {
    const report = await runJobByName("drop-everything", jobDeps());
    expect(report.ok).toBe(false);
    expect(String(report.error)).toContain("prune-sessions");
  });
});

describe("jobs: scheduler", () => {
  test("a tick runs the jobs due in that minute once; a repeated tick does not run them again", async () => {
    const scheduler = createScheduler(jobDeps(), { host: "test-host" });
    const runs = await scheduler.tick(NOW); // 10:15 on a Wednesday: prune, and mail as every minute
    expect(runs.map((r) => [r.job, r.ran])).toEqual([
      ["prune-sessions", true],
      ["deliver-mail", true],
    ]);
    expect((await scheduler.tick(NOW)).map((r) => r.ran)).toEqual([false, false]);
    expect((await scheduler.tick(new Date("2026-11-25T10:16:00Z"))).map((r) => r.job)).toEqual(["deliver-mail"]);
  });

  test("maintenance runs on Sunday at 03:00 alongside prune", async () => {
    const runs = await createScheduler(jobDeps(), { host: "test-host", jobs: jobSchedule.filter((j) => !j.bunOnly) }).tick(
      new Date("2026-11-29T03:00:00Z"),
    );
    expect(runs.map((r) => r.job).sort()).toEqual(["deliver-mail", "maintenance", "prune-sessions"]);
    expect(runs.every((r) => r.ran && r.report?.ok)).toBe(true);
  });
});

describe.if(onPostgres)("jobs: two hosts on one database (Postgres)", () => {
  test("two hosts starting the same job for the same minute: it runs once", async () => {
    const other = await createPostgresDatabase({ url: handle.url!, poolMax: 5, prepare: prepareStatements });
    try {
      for (let round = 0; round < 5; round++) {
        const minute = new Date(NOW.getTime() + round * 15 * 60_000);
        const user = await insertUser();
        await insertSessions(user, 3, new Date(minute.getTime() - 1_000));
        const clock = createTestClock(minute);
        const a = createScheduler(jobDeps({ clock }), { host: "host-a" });
        const b = createScheduler({ ...jobDeps({ clock }), db: other.db, handle: other }, { host: "host-b" });
        const [ra, rb] = await Promise.all([a.tick(minute), b.tick(minute)]);
        const ran = [...ra, ...rb].filter((r) => r.ran && r.job === "prune-sessions");
        expect(ran).toHaveLength(1);
        expect(ran[0].report).toMatchObject({ ok: true, sessionsDeleted: 3 });
        const rows = await queryRows<{ n: string | number }>(
          handle.db,
          sql`select count(*) as n from job_runs where job = 'prune-sessions' and scheduled_for = ${dbTime(minute)}`,
        );
        expect(Number(rows[0].n)).toBe(1);
      }
    } finally {
      await other.close();
    }
  });
});
