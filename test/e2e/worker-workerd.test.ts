// The Worker on real workerd (`wrangler dev`, started by .ci/worker.sh with E2E_WORKER_URL and
// E2E_DATABASE_URL): passwords cross the runtimes both ways through the shared database, and each
// cron of wrangler.toml, fired through /__scheduled, has its effect in the database.
// Skipped unless those two variables are set.
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { sql } from "drizzle-orm";
import { createPostgresDatabase, queryRows } from "../../src/db/client";
import { hashPassword, verifyPassword } from "../../src/lib/passwords";
import { uniqueEmail } from "../support/app";

const WORKER_URL = process.env.E2E_WORKER_URL?.replace(/\/+$/, "");
const DATABASE_URL = process.env.E2E_DATABASE_URL;
const enabled = Boolean(WORKER_URL && DATABASE_URL);

const handle = enabled
  ? await createPostgresDatabase({ url: DATABASE_URL!, poolMax: 2, prepare: process.env.DATABASE_PREPARE !== "false" })
  : undefined;
afterAll(() => handle?.close());
const db = () => handle!.db;

async function call(path: string, body: unknown, token?: string) {
  const res = await fetch(`${WORKER_URL}/trpc/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: each test reads the fields of the procedure it called
  return { status: res.status, json: (await res.json()) as { result?: { data: any }; error?: { data?: { code?: string } } } };
}

async function fireCron(cron: string) {
  const res = await fetch(`${WORKER_URL}/__scheduled?cron=${encodeURIComponent(cron)}`);
  expect(res.status).toBe(200);
  await res.text();
}

async function storedHash(email: string): Promise<string> {
  const [row] = await queryRows<{ password_hash: string }>(db(), sql`select password_hash from users where email = ${email}`);
  return row.password_hash;
}

/** The crons this Worker is deployed with, read from wrangler.toml itself. */
function wranglerCrons(): string[] {
  const toml = readFileSync(new URL("../../wrangler.toml", import.meta.url), "utf8");
  const m = /^crons\s*=\s*\[([^\]]*)\]/m.exec(toml);
  return m ? [...m[1].matchAll(/"([^"]+)"/g)].map((x) => x[1]) : [];
}

/** Job effects are checked after the run finished; its row is written at the end of the run. */
async function waitForRun(job: string, since: Date) {
  for (let i = 0; i < 100; i++) {
    const [run] = await queryRows<{ ok: boolean | null; host: string; report: Record<string, unknown> | null }>(
      db(),
      sql`select ok, host, report from job_runs where job = ${job} and finished_at is not null
           and started_at >= ${since.toISOString().replace("T", " ").replace("Z", "")}
           order by started_at desc limit 1`,
    );
    if (run) return run;
    await Bun.sleep(100);
  }
  throw new Error(`${job} did not finish`);
}

describe.if(enabled)("worker on workerd: passwords across runtimes", () => {
  test("an account whose hash Bun made (native argon2) logs in on the Worker (wasm argon2)", async () => {
    const email = uniqueEmail("bun-made");
    const hash = await hashPassword("made on bun 123");
    await db().execute(sql`insert into users (email, password_hash) values (${email}, ${hash})`);
    const login = await call("auth.login", { email, password: "made on bun 123" });
    expect(login.status).toBe(200);
    expect(login.json.result?.data.user.email).toBe(email);
    // Same parameters on both sides: the Worker has no reason to re-hash it.
    expect(await storedHash(email)).toBe(hash);
  });

  test("an account the Worker registered verifies with Bun's native argon2", async () => {
    const email = uniqueEmail("worker-made");
    expect((await call("auth.register", { email, password: "made on workerd 456" })).status).toBe(200);
    const hash = await storedHash(email);
    expect(hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(await verifyPassword(hash, "made on workerd 456")).toBe(true);
    expect(await verifyPassword(hash, "made on workerd 457")).toBe(false);
  });

  test("a wrong password is refused on the Worker for a Bun-made hash", async () => {
    const email = uniqueEmail("bun-made");
    await db().execute(sql`insert into users (email, password_hash) values (${email}, ${await hashPassword("the right one")})`);
    const login = await call("auth.login", { email, password: "the wrong one" });
    expect(login.status).toBe(401);
    expect(login.json.error?.data?.code).toBe("UNAUTHORIZED");
  });
});

describe.if(enabled)("worker on workerd: crons", () => {
  // A job runs once per (job, minute) across hosts; clear earlier claims so this run is ours.
  beforeEach(async () => {
    await db().execute(sql`delete from job_runs`);
  });

  test("wrangler.toml schedules exactly the Worker's three jobs (prune, maintenance, mail delivery)", () => {
    expect(wranglerCrons().sort()).toEqual(["*/15 * * * *", "0 3 * * 0", "* * * * *"].sort());
  });

  test("*/15 * * * * prunes expired sessions and keeps live ones", async () => {
    const email = uniqueEmail("cron");
    const [user] = await queryRows<{ id: string }>(
      db(),
      sql`insert into users (email, password_hash) values (${email}, 'not-a-hash') returning id`,
    );
    await db().execute(sql`insert into sessions (user_id, token_hash, expires_at) values
      (${user.id}, 'expired-1', (now() at time zone 'utc') - interval '1 minute'),
      (${user.id}, 'expired-2', (now() at time zone 'utc') - interval '3 days'),
      (${user.id}, 'live', (now() at time zone 'utc') + interval '1 hour')`);
    const since = new Date(Date.now() - 1000);
    await fireCron("*/15 * * * *");
    const run = await waitForRun("prune-sessions", since);
    expect(run.ok).toBe(true);
    expect(run.host).toBe("worker");
    const left = await queryRows<{ token_hash: string }>(db(), sql`select token_hash from sessions where user_id = ${user.id}`);
    expect(left.map((r) => r.token_hash)).toEqual(["live"]);
  }, 20_000);

  test("0 3 * * 0 vacuums and analyzes the five tables and reports the orders count", async () => {
    const since = new Date(Date.now() - 1000);
    await fireCron("0 3 * * 0");
    const run = await waitForRun("maintenance", since);
    expect(run.ok).toBe(true);
    expect((run.report!.vacuumed as string[]).sort()).toEqual(["order_items", "orders", "products", "sessions", "users"]);
    const [{ n }] = await queryRows<{ n: string | number }>(db(), sql`select count(*) as n from orders`);
    expect(run.report?.ordersRows).toBe(Number(n));
    // VACUUM's own statistics, in case a report could claim what did not happen.
    let vacuumed = 0;
    for (let i = 0; i < 100 && vacuumed < 5; i++) {
      if (i > 0) await Bun.sleep(100);
      const [row] = await queryRows<{ n: string | number }>(
        db(),
        sql`select count(*) as n from pg_stat_user_tables
             where relname in ('users', 'products', 'orders', 'order_items', 'sessions')
               and last_vacuum >= ${since.toISOString()}::timestamptz and last_analyze >= ${since.toISOString()}::timestamptz`,
      );
      vacuumed = Number(row.n);
    }
    expect(vacuumed).toBe(5);
  }, 30_000);

  test("a cron the Worker does not own runs nothing", async () => {
    const since = new Date(Date.now() - 1000);
    await fireCron("0 2 * * *"); // the full backup: Bun host only
    const rows = await queryRows<{ n: string | number }>(
      db(),
      sql`select count(*) as n from job_runs where started_at >= ${since.toISOString().replace("T", " ").replace("Z", "")}`,
    );
    expect(Number(rows[0].n)).toBe(0);
  });
});
