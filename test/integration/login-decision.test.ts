// The sign-in reads its throttle counters before the password hash (writing nothing) and decides
// after it, in one statement that writes the session only while no counter is at its bar. These
// tests hold the hash of the right password open, count failures meanwhile, and check that the
// deciding statement (not the read before the hash) is what refuses.
import { afterAll, beforeEach, describe, expect, mock, setDefaultTimeout, test } from "bun:test";
import { verify } from "@node-rs/argon2";
import { and, eq, sql } from "drizzle-orm";
import { queryRows } from "../../src/db/client";
import { auditEvents, sessions } from "../../src/db/schema";
import { emailKey } from "../../src/services/login-throttle";
import { callerFor, createTestDeps, errorCodeOf, signUp, throttleFailures, uniqueEmail } from "../support/app";
import { getTestDatabase, resetDatabase } from "../support/db";

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

describe("sign-in: the statement after the hash decides", () => {
  test("happy: a right password held at the hash, with nothing counted meanwhile, signs in and forgives", async () => {
    const deps = createTestDeps(handle.db);
    const { user, password } = await signUp(deps);
    for (let i = 0; i < 3; i++) await errorCodeOf(callerFor(deps).auth.login({ email: user.email, password: "wrong password" }));
    const held = await signInHeldAtTheHash(() => callerFor(deps).auth.login({ email: user.email, password }), password);
    expect(await held.finish()).toBe("no error");
    expect(await throttleFailures(handle.db, emailKey(user.email))).toBe(0);
  });

  test("security: failures that reach the email's bar while the right password is hashed refuse it, and nothing is written", async () => {
    const deps = createTestDeps(handle.db);
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
    const deps = createTestDeps(handle.db);
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
    const deps = createTestDeps(handle.db);
    const email = uniqueEmail("burst");
    const wrong = "a wrong guess";
    const held = await signInHeldAtTheHash(() => callerFor(deps).auth.login({ email, password: wrong }), wrong);
    for (let i = 0; i < 10; i++) await errorCodeOf(callerFor(deps).auth.login({ email, password: "another guess" }));
    expect(await held.finish()).toBe("TOO_MANY_REQUESTS");
    expect(await throttleFailures(handle.db, emailKey(email))).toBe(11);
  });
});
