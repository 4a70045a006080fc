// The sign-in reads its throttle counters before the password hash (writing nothing) and decides
// after it, in one statement that writes the session only while no counter is at its bar. These
// tests hold the hash of the right password open, count failures meanwhile, and check that the
// deciding statement (not the read before the hash) is what refuses. They run on both of the
// statements' shapes: the functions' calls (PGlite, PgBouncer) and, with TEST_DIRECT_DATABASE_URL
// (.ci/run sets it), their bodies as prepared statements straight to Postgres
// (DATABASE_PREPARE=true, src/db/prepared.ts sendLoginStatement).
import { afterAll, beforeEach, describe, expect, mock, setDefaultTimeout, test } from "bun:test";
import { verify } from "@node-rs/argon2";
import { and, eq, sql } from "drizzle-orm";
import { createPostgresDatabase, type Database, queryRows } from "../../src/db/client";
import { AUTH_LOGIN_DECIDE, AUTH_LOGIN_READ, type LoginStatement } from "../../src/db/functions";
import { sendRendered } from "../../src/db/prepared";
import { auditEvents, sessions } from "../../src/db/schema";
import { toDbTime } from "../../src/lib/time";
import {
  addressKey,
  emailKey,
  MAX_ATTEMPTS_PER_ADDRESS,
  MAX_ATTEMPTS_PER_EMAIL,
  THROTTLE_WINDOW_SECONDS,
  throttleWindow,
} from "../../src/services/login-throttle";
import { callerFor, createTestDeps, errorCodeOf, signUp, throttleFailures, uniqueEmail } from "../support/app";
import { getTestDatabase, onPostgres, resetDatabase, withDatabaseName } from "../support/db";

setDefaultTimeout(60_000);

// The real verify (as src/lib/passwords.ts has it), except that a check of `gatedPassword` waits
// for `release` once it has finished: the sign-in's first statement has run by then.
let gatedPassword: string | undefined;
let arrived: () => void = () => {};
let release: Promise<void> = Promise.resolve();
const realModule = await import("../../src/lib/passwords");
mock.module("../../src/lib/passwords", () => ({
  ...realModule,
  verifyPassword: async (passwordHash: string, password: string) => {
    let ok: boolean;
    try {
      ok = await verify(passwordHash, password);
    } catch {
      ok = false;
    }
    if (password === gatedPassword) {
      arrived();
      await release;
    }
    return ok;
  },
}));
afterAll(() => {
  gatedPassword = undefined;
  mock.module("../../src/lib/passwords", () => realModule);
});

const handle = await getTestDatabase();
beforeEach(() => resetDatabase(handle));

const DIRECT = process.env.TEST_DIRECT_DATABASE_URL || undefined;
// This process's test database without the pooler, its statements prepared on the server.
const prepared =
  onPostgres && DIRECT
    ? await createPostgresDatabase({
        url: withDatabaseName(DIRECT, new URL(handle.url!).pathname.slice(1)),
        poolMax: 4,
        prepare: true,
      })
    : undefined;
afterAll(() => prepared?.close());
const shapes: [string, Database][] = [
  [onPostgres ? "the functions' calls, through the configured URL" : "the functions' calls, on PGlite", handle.db],
  ...(prepared ? [["their bodies prepared, straight to Postgres", prepared.db] as [string, Database]] : []),
];

/** Starts a sign-in whose hash check waits, and resolves once it waits there. */
async function signInHeldAtTheHash(run: () => Promise<unknown>, password: string) {
  let open: () => void = () => {};
  release = new Promise<void>((resolve) => {
    open = resolve;
  });
  const atHash = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  gatedPassword = password;
  const outcome = errorCodeOf(run());
  await atHash;
  return {
    finish: async () => {
      gatedPassword = undefined;
      open();
      return outcome;
    },
  };
}

async function countOf(query: ReturnType<typeof sql>): Promise<number> {
  const [row] = await queryRows<{ n: number }>(handle.db, query);
  return Number(row.n);
}
const sessionsOf = (userId: string) => countOf(sql`select count(*) as n from ${sessions} where ${eq(sessions.userId, userId)}`);

describe.each(shapes)("sign-in: the statement after the hash decides (%s)", (_shape, db) => {
  test("happy: a right password held at the hash, with nothing counted meanwhile, signs in and forgives", async () => {
    const deps = createTestDeps(db);
    const { user, password } = await signUp(deps);
    for (let i = 0; i < 3; i++) await errorCodeOf(callerFor(deps).auth.login({ email: user.email, password: "wrong password" }));
    const held = await signInHeldAtTheHash(() => callerFor(deps).auth.login({ email: user.email, password }), password);
    expect(await held.finish()).toBe("no error");
    expect(await throttleFailures(handle.db, emailKey(user.email))).toBe(0);
  });

  test("security: failures that reach the email's bar while the right password is hashed refuse it, and nothing is written", async () => {
    const deps = createTestDeps(db);
    const { user, password } = await signUp(deps);
    const sessionsBefore = await sessionsOf(user.id);
    const held = await signInHeldAtTheHash(() => callerFor(deps).auth.login({ email: user.email, password }), password);
    // A burst of guesses for the same email, all counted while the right one waits.
    const codes = [];
    for (let i = 0; i < 10; i++)
      codes.push(await errorCodeOf(callerFor(deps).auth.login({ email: user.email, password: "wrong password" })));
    expect(codes).toEqual(Array(10).fill("UNAUTHORIZED"));
    expect(await held.finish()).toBe("TOO_MANY_REQUESTS");
    expect(await sessionsOf(user.id)).toBe(sessionsBefore);
    expect(
      await countOf(
        sql`select count(*) as n from ${auditEvents} where ${and(eq(auditEvents.action, "auth.login"), eq(auditEvents.targetId, user.id))}`,
      ),
    ).toBe(0);
    // The failures stay counted: the right password is refused until the window passes.
    expect(await throttleFailures(handle.db, emailKey(user.email))).toBe(10);
  });

  test("security: the address's bar, reached meanwhile from other emails, refuses it too", async () => {
    const deps = createTestDeps(db);
    const { user, password } = await signUp(deps);
    const from = { clientAddress: "198.51.100.99" };
    const held = await signInHeldAtTheHash(() => callerFor(deps, from).auth.login({ email: user.email, password }), password);
    // The address at its bar (as 100 failures across other emails leave it), counted meanwhile.
    await handle.db.execute(
      sql`insert into login_throttle (key, failures, window_started_at, expires_at)
          values (${`ip:${from.clientAddress}`}, 100, now() at time zone 'utc', now() at time zone 'utc' + interval '15 minutes')`,
    );
    expect(await held.finish()).toBe("TOO_MANY_REQUESTS");
    expect(await sessionsOf(user.id)).toBe(1); // signUp's own
  });

  test("error: a wrong password counted past the bar in a burst answers TOO_MANY_REQUESTS, not UNAUTHORIZED", async () => {
    const deps = createTestDeps(db);
    const email = uniqueEmail("burst");
    const wrong = "a wrong guess";
    const held = await signInHeldAtTheHash(() => callerFor(deps).auth.login({ email, password: wrong }), wrong);
    for (let i = 0; i < 10; i++) await errorCodeOf(callerFor(deps).auth.login({ email, password: "another guess" }));
    expect(await held.finish()).toBe("TOO_MANY_REQUESTS");
    expect(await throttleFailures(handle.db, emailKey(email))).toBe(11);
  });
});

// Each sign-in statement exists twice: the migration's function, called through a pooler or on
// PGlite, and its body, prepared where the connection keeps prepared statements. Both are written
// from one text (src/db/functions.ts); these run both on the same states and compare what they
// answer and what they leave behind.
describe("sign-in statements: a function's call and its body answer alike", () => {
  const userId = "0190a5e4-0000-7000-8000-00000000c0de";
  const email = "shapes@example.com";
  const address = "203.0.113.7";
  const now = new Date();
  const window = throttleWindow(THROTTLE_WINDOW_SECONDS, now);
  const longAgo = toDbTime(new Date(now.getTime() - 2 * THROTTLE_WINDOW_SECONDS * 1000));

  type Counter = [key: string, failures: number, startedAt: string];
  const scenarios: { name: string; counters: Counter[]; refusedBy: string[] }[] = [
    { name: "happy: no counters: the session and the event are written", counters: [], refusedBy: [] },
    { name: "happy: failures below the bar are forgiven", counters: [[emailKey(email), 3, window.now]], refusedBy: [] },
    {
      name: "security: the email at its bar refuses and writes nothing",
      counters: [[emailKey(email), 10, window.now]],
      refusedBy: [emailKey(email)],
    },
    {
      name: "security: the address at its bar refuses and writes nothing",
      counters: [[addressKey(address), 100, window.now]],
      refusedBy: [addressKey(address)],
    },
    { name: "happy: a bar reached in a window that has closed does not count", counters: [[emailKey(email), 10, longAgo]], refusedBy: [] },
  ];

  async function run(shape: "call" | "statement", counters: Counter[]) {
    await resetDatabase(handle);
    await handle.db.execute(
      sql`insert into users (id, email, password_hash, role, created_at, updated_at)
          values (${userId}::uuid, ${email}, 'not-a-hash', 'customer', ${window.now}::timestamp, ${window.now}::timestamp)`,
    );
    for (const [key, failures, startedAt] of counters) {
      await handle.db.execute(
        sql`insert into login_throttle (key, failures, window_started_at, expires_at)
            values (${key}, ${failures}, ${startedAt}::timestamp, ${window.expires}::timestamp)`,
      );
    }
    const send = <N extends string>(statement: LoginStatement<N>, values: Record<N, unknown>) =>
      sendRendered<Record<string, unknown>>(handle.db, { sql: statement[shape], params: statement.params.map((n) => values[n]) }, false);
    const keys = { email_key: emailKey(email), address_key: addressKey(address), window_floor: window.floor };
    const read = await send(AUTH_LOGIN_READ, { ...keys, account_email: email });
    const decided = await send(AUTH_LOGIN_DECIDE, {
      ...keys,
      email_bar: MAX_ATTEMPTS_PER_EMAIL,
      address_bar: MAX_ATTEMPTS_PER_ADDRESS,
      event_id: "0190a5e4-0000-7000-8000-0000000e0e01",
      event_at: window.now,
      event_actor_id: null,
      event_ip: address,
      event_request_id: "req-shapes",
      session_id: "0190a5e4-0000-7000-8000-0000005e5501",
      session_user_id: userId,
      session_token_hash: "a-token-hash",
      session_expires_at: window.expires,
      session_created_at: window.now,
    });
    const left = await queryRows<Record<string, unknown>>(
      handle.db,
      sql`select (select count(*)::int from sessions where user_id = ${userId}::uuid) as sessions,
                 (select count(*)::int from audit_events where action = 'auth.login' and target_id = ${userId}::uuid) as events,
                 (select coalesce(json_agg(json_build_array(key, failures) order by key), '[]'::json)::text from login_throttle) as counters`,
    );
    return { read, decided, left: left[0] };
  }

  for (const scenario of scenarios) {
    test(scenario.name, async () => {
      const byCall = await run("call", scenario.counters);
      const byBody = await run("statement", scenario.counters);
      expect(byBody).toEqual(byCall);
      // And what they agree on is the decision the scenario expects.
      expect(byCall.read[0]?.id).toBe(userId);
      expect(byCall.read.filter((r) => r.key !== null).length).toBe(scenario.counters.filter(([, , at]) => at !== longAgo).length);
      expect(byCall.decided.map((r) => r.key)).toEqual(scenario.refusedBy);
      const written = scenario.refusedBy.length === 0 ? 1 : 0;
      expect(byCall.left).toMatchObject({ sessions: written, events: written });
      // A sign-in forgives the email's failures, those of a closed window too.
      const forgiven = scenario.counters.map(([key, failures]) => [key, written && key === emailKey(email) ? 0 : failures]);
      expect(JSON.parse(String(byCall.left.counters))).toEqual(forgiven);
    });
  }
});
