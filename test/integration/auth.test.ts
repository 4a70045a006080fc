import { afterAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { hash as argon2Hash } from "@node-rs/argon2";
import { eq, sql } from "drizzle-orm";
import { SignJWT } from "jose";
import { createApp, MAX_BATCH_SIZE } from "../../src/app";
import { queryRows } from "../../src/db/client";
import { sessions, users } from "../../src/db/schema";
import { createTokenConfig, hashToken, TOKEN_AUDIENCE, TOKEN_ISSUER } from "../../src/lib/tokens";
import { auditInsert, systemAudit } from "../../src/services/audit";
import { ensureAdmin } from "../../src/services/auth";
import { emailKey, forgiveAttemptCtes, pruneExpiredThrottles, reserveLoginAttempt } from "../../src/services/login-throttle";
import { clientAddressOf } from "../../src/trpc/context";
import {
  callerFor,
  createTestClock,
  createTestDeps,
  errorCodeOf,
  signUp,
  TEST_JWT_SECRET,
  throttleFailures as throttleFailuresIn,
  uniqueEmail,
} from "../support/app";
import { getTestDatabase, onPostgres, resetDatabase } from "../support/db";

import { serveInProcess } from "../support/server";

// Argon2 and PGlite are CPU-bound and CI machines are small: generous per-test limits, no timing asserts.
setDefaultTimeout(60_000);

const handle = await getTestDatabase();
beforeEach(() => resetDatabase(handle));

const WRONG = "wrong password";

/** The rejected call's error (message, code, and the formatted-for-HTTP data where relevant). */
async function errorOf(promise: Promise<unknown>): Promise<{ code: string; message: string; cause?: unknown }> {
  try {
    await promise;
  } catch (error) {
    return error as { code: string; message: string };
  }
  throw new Error("the call succeeded but should have failed");
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

const throttleFailures = (key: string) => throttleFailuresIn(handle.db, key);

describe("auth: happy path", () => {
  test("register, me, login, logout", async () => {
    const deps = createTestDeps(handle.db);
    const email = uniqueEmail();
    const registered = await callerFor(deps).auth.register({ email: `  ${email.toUpperCase()} `, password: "password one" });
    expect(registered.user.email).toBe(email);
    expect(registered.user.role).toBe("customer");
    const me = await callerFor(deps, { token: registered.accessToken }).auth.me();
    expect(me.id).toBe(registered.user.id);
    const loggedIn = await callerFor(deps).auth.login({ email, password: "password one" });
    expect(loggedIn.accessToken).not.toBe(registered.accessToken);
    await callerFor(deps, { token: loggedIn.accessToken }).auth.logout();
    expect(await errorCodeOf(callerFor(deps, { token: loggedIn.accessToken }).auth.me())).toBe("UNAUTHORIZED");
    // The other session is untouched.
    expect((await callerFor(deps, { token: registered.accessToken }).auth.me()).email).toBe(email);
  });

  test("register returns the user, a token and its expiry (now + SESSION_TTL_SECONDS)", async () => {
    const clock = createTestClock(new Date("2026-11-24T23:17:00.000Z"));
    const deps = createTestDeps(handle.db, { clock });
    const auth = await callerFor(deps).auth.register({ email: "Ada@Example.com", password: "correct horse battery" });
    expect(auth.user).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      email: "ada@example.com",
      role: "customer",
      emailVerified: false,
      disabled: false,
      createdAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
      updatedAt: expect.stringMatching(/Z$/),
    });
    expect(auth.expiresAt).toBe(new Date(clock().getTime() + deps.env.SESSION_TTL_SECONDS * 1000).toISOString());
    // Login finds the account whatever the case and spacing of the email.
    const again = await callerFor(deps).auth.login({ email: " ADA@example.COM", password: "correct horse battery" });
    expect(again.user.id).toBe(auth.user.id);
  });

  test("refresh: a new token works and the old one stops working at once", async () => {
    const deps = createTestDeps(handle.db);
    const { accessToken, caller, user } = await signUp(deps);
    const refreshed = await caller.auth.refresh();
    expect(refreshed.accessToken).not.toBe(accessToken);
    expect(refreshed.user.id).toBe(user.id);
    expect((await callerFor(deps, { token: refreshed.accessToken }).auth.me()).id).toBe(user.id);
    expect(await errorCodeOf(caller.auth.me())).toBe("UNAUTHORIZED");
    expect(await errorCodeOf(caller.auth.refresh())).toBe("UNAUTHORIZED");
    const live = await callerFor(deps, { token: refreshed.accessToken }).auth.sessions();
    expect(live).toHaveLength(1);
  });

  test("logoutAll revokes every session, this one included, and counts them", async () => {
    const deps = createTestDeps(handle.db);
    const { caller, user, password } = await signUp(deps);
    const second = await callerFor(deps).auth.login({ email: user.email, password });
    const third = await callerFor(deps).auth.login({ email: user.email, password });
    const other = await signUp(deps);
    expect(await caller.auth.logoutAll()).toEqual({ ok: true, revoked: 3 });
    for (const token of [second.accessToken, third.accessToken]) {
      expect(await errorCodeOf(callerFor(deps, { token }).auth.me())).toBe("UNAUTHORIZED");
    }
    expect(await errorCodeOf(caller.auth.me())).toBe("UNAUTHORIZED");
    // Someone else's session is not touched.
    expect((await other.caller.auth.me()).id).toBe(other.user.id);
  });

  test("sessions: the active ones, newest first, the caller's marked current", async () => {
    const clock = createTestClock(new Date("2026-11-24T10:00:00.000Z"));
    const deps = createTestDeps(handle.db, { clock });
    const first = await signUp(deps);
    clock.advance(60);
    const second = await callerFor(deps).auth.login({ email: first.user.email, password: first.password });
    clock.advance(60);
    const third = await callerFor(deps).auth.login({ email: first.user.email, password: first.password });
    await signUp(deps); // another user's session never shows up

    const list = await callerFor(deps, { token: second.accessToken }).auth.sessions();
    expect(list).toHaveLength(3);
    expect(list.map((s) => s.createdAt)).toEqual(["2026-11-24T10:02:00.000Z", "2026-11-24T10:01:00.000Z", "2026-11-24T10:00:00.000Z"]);
    expect(list.map((s) => s.current)).toEqual([false, true, false]);
    expect(list[0]).toEqual({
      id: expect.any(String),
      createdAt: "2026-11-24T10:02:00.000Z",
      expiresAt: third.expiresAt,
      current: false,
    });
    // A session past its expiry is not active any more.
    clock.advance(deps.env.SESSION_TTL_SECONDS - 60);
    const later = await callerFor(deps, { token: third.accessToken }).auth.sessions();
    expect(later.map((s) => s.current)).toEqual([true]);
  });

  test("revokeSession ends one of your other sessions", async () => {
    const deps = createTestDeps(handle.db);
    const { caller, user, password } = await signUp(deps);
    const other = await callerFor(deps).auth.login({ email: user.email, password });
    const target = (await caller.auth.sessions()).find((s) => !s.current)!;
    expect(await caller.auth.revokeSession({ sessionId: target.id })).toEqual({ ok: true });
    expect(await errorCodeOf(callerFor(deps, { token: other.accessToken }).auth.me())).toBe("UNAUTHORIZED");
    expect((await caller.auth.me()).id).toBe(user.id);
    expect((await caller.auth.sessions()).map((s) => s.current)).toEqual([true]);
  });

  test("changePassword: a fresh token, every other session revoked, the new password works", async () => {
    const deps = createTestDeps(handle.db);
    const { caller, user, password } = await signUp(deps);
    const other = await callerFor(deps).auth.login({ email: user.email, password });
    const changed = await caller.auth.changePassword({ currentPassword: password, newPassword: "a brand new password" });
    expect(changed.user.id).toBe(user.id);
    expect((await callerFor(deps, { token: changed.accessToken }).auth.me()).id).toBe(user.id);
    expect(await errorCodeOf(callerFor(deps, { token: other.accessToken }).auth.me())).toBe("UNAUTHORIZED");
    expect(await errorCodeOf(caller.auth.me())).toBe("UNAUTHORIZED");
    expect(await callerFor(deps, { token: changed.accessToken }).auth.sessions()).toHaveLength(1);
    expect(await errorCodeOf(callerFor(deps).auth.login({ email: user.email, password }))).toBe("UNAUTHORIZED");
    expect((await callerFor(deps).auth.login({ email: user.email, password: "a brand new password" })).user.id).toBe(user.id);
  });

  test("a password hashed with weaker parameters is re-hashed at the next login", async () => {
    const deps = createTestDeps(handle.db);
    const email = uniqueEmail();
    const password = "an old password";
    const weak = await argon2Hash(password, { memoryCost: 4096, timeCost: 1, parallelism: 1 });
    expect(weak).toContain("m=4096,t=1");
    await handle.db.insert(users).values({ email, passwordHash: weak });

    await callerFor(deps).auth.login({ email, password });
    const [row] = await handle.db.select().from(users).where(eq(users.email, email));
    expect(row.passwordHash).not.toBe(weak);
    expect(row.passwordHash).toMatch(/^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=1\$/);
    const [, m, t] = /m=(\d+),t=(\d+)/.exec(row.passwordHash)!;
    expect(Number(m)).toBeGreaterThanOrEqual(19_456);
    expect(Number(t)).toBeGreaterThanOrEqual(2);
    // The new hash verifies the same password; a second login leaves it alone.
    await callerFor(deps).auth.login({ email, password });
    const [again] = await handle.db.select().from(users).where(eq(users.email, email));
    expect(again.passwordHash).toBe(row.passwordHash);
  });

  test("ensureAdmin is idempotent, promotes instead of duplicating, and updates a changed password", async () => {
    const deps = createTestDeps(handle.db);
    const email = "boss@example.com";
    expect(await ensureAdmin(handle.db, email, "first admin password")).toEqual({ created: true });
    const [created] = await handle.db.select().from(users).where(eq(users.email, email));
    expect(await ensureAdmin(handle.db, email, "first admin password")).toEqual({ created: false });
    const rows = await handle.db.select().from(users).where(eq(users.email, email));
    expect(rows).toHaveLength(1);
    expect(rows[0].role).toBe("admin");
    expect(rows[0].passwordHash).toBe(created.passwordHash); // nothing changed on the second run

    const before = await callerFor(deps).auth.login({ email, password: "first admin password" });
    expect(await ensureAdmin(handle.db, email, "second admin password")).toEqual({ created: false });
    // Rotating ADMIN_PASSWORD ends the sessions signed in with the old one.
    expect(await errorCodeOf(callerFor(deps, { token: before.accessToken }).auth.me())).toBe("UNAUTHORIZED");
    expect(await handle.db.select().from(users).where(eq(users.email, email))).toHaveLength(1);
    expect(await errorCodeOf(callerFor(deps).auth.login({ email, password: "first admin password" }))).toBe("UNAUTHORIZED");
    const login = await callerFor(deps).auth.login({ email, password: "second admin password" });
    expect(login.user.role).toBe("admin");

    // An existing customer with that email is promoted, not duplicated.
    const customer = await signUp(deps);
    await ensureAdmin(handle.db, customer.user.email, customer.password);
    const promoted = await handle.db.select().from(users).where(eq(users.email, customer.user.email));
    expect(promoted.map((u) => u.role)).toEqual(["admin"]);
    expect((await customer.caller.auth.me()).role).toBe("admin");
  });
});

describe("auth: errors", () => {
  test("a duplicate email is CONFLICT, whatever its case or spacing", async () => {
    const deps = createTestDeps(handle.db);
    const { user } = await signUp(deps);
    expect(await errorCodeOf(callerFor(deps).auth.register({ email: ` ${user.email.toUpperCase()}`, password: "another password" }))).toBe(
      "CONFLICT",
    );
  });

  test("unknown email and wrong password: the same code and the same message", async () => {
    const deps = createTestDeps(handle.db);
    const { user } = await signUp(deps);
    const wrong = await errorOf(callerFor(deps).auth.login({ email: user.email, password: WRONG }));
    const unknown = await errorOf(callerFor(deps).auth.login({ email: uniqueEmail("nobody"), password: WRONG }));
    expect(wrong.code).toBe("UNAUTHORIZED");
    expect(unknown.code).toBe(wrong.code);
    expect(unknown.message).toBe(wrong.message);
  });

  test("changePassword with a wrong current password is FORBIDDEN and changes nothing", async () => {
    const deps = createTestDeps(handle.db);
    const { caller, user, password } = await signUp(deps);
    expect(await errorCodeOf(caller.auth.changePassword({ currentPassword: WRONG, newPassword: "whatever new one" }))).toBe("FORBIDDEN");
    expect((await caller.auth.me()).id).toBe(user.id);
    expect((await callerFor(deps).auth.login({ email: user.email, password })).user.id).toBe(user.id);
  });

  test("revokeSession: another user's session is NOT_FOUND (and survives); an unknown id NOT_FOUND; a malformed id BAD_REQUEST", async () => {
    const deps = createTestDeps(handle.db);
    const alice = await signUp(deps);
    const bob = await signUp(deps);
    const [aliceSession] = await alice.caller.auth.sessions();
    expect(await errorCodeOf(bob.caller.auth.revokeSession({ sessionId: aliceSession.id }))).toBe("NOT_FOUND");
    expect((await alice.caller.auth.me()).id).toBe(alice.user.id);
    expect(await errorCodeOf(bob.caller.auth.revokeSession({ sessionId: crypto.randomUUID() }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(bob.caller.auth.revokeSession({ sessionId: "not-a-uuid" }))).toBe("BAD_REQUEST");
  });

  test("every signed-in procedure without a token is UNAUTHORIZED", async () => {
    const anon = callerFor(createTestDeps(handle.db));
    expect(await errorCodeOf(anon.auth.me())).toBe("UNAUTHORIZED");
    expect(await errorCodeOf(anon.auth.refresh())).toBe("UNAUTHORIZED");
    expect(await errorCodeOf(anon.auth.logout())).toBe("UNAUTHORIZED");
    expect(await errorCodeOf(anon.auth.logoutAll())).toBe("UNAUTHORIZED");
    expect(await errorCodeOf(anon.auth.sessions())).toBe("UNAUTHORIZED");
    expect(await errorCodeOf(anon.auth.revokeSession({ sessionId: crypto.randomUUID() }))).toBe("UNAUTHORIZED");
    expect(await errorCodeOf(anon.auth.changePassword({ currentPassword: "12345678", newPassword: "12345678" }))).toBe("UNAUTHORIZED");
  });

  test("register validation: bad email, short and long passwords are BAD_REQUEST naming the field", async () => {
    const app = createApp(createTestDeps(handle.db));
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ email: "not-an-email", password: "long enough password" }, "email"],
      [{ email: `${"a".repeat(250)}@example.com`, password: "long enough password" }, "email"],
      [{ email: uniqueEmail(), password: "short" }, "password"],
      [{ email: uniqueEmail(), password: "x".repeat(129) }, "password"],
      [{ email: uniqueEmail() }, "password"],
    ];
    for (const [input, field] of cases) {
      const res = await app.request("/trpc/auth.register", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(input),
      });
      const body = (await res.json()) as { error: { message: string; data: { code: string } } };
      expect(res.status).toBe(400);
      expect(body.error.data.code).toBe("BAD_REQUEST");
      expect(body.error.message).toContain(field);
    }
  });
});

describe("auth: security", () => {
  /** A signed-in user, plus the pieces a forger would start from. */
  async function victim() {
    const clock = createTestClock();
    const deps = createTestDeps(handle.db, { clock });
    const signed = await signUp(deps);
    const [session] = await handle.db.select().from(sessions).where(eq(sessions.userId, signed.user.id));
    const now = Math.floor(clock().getTime() / 1000);
    const claims = { iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE, sub: signed.user.id, sid: session.id, iat: now, exp: now + 3600 };
    return { deps, clock, signed, session, claims };
  }
  const meWith = (deps: ReturnType<typeof createTestDeps>, token: string) => errorCodeOf(callerFor(deps, { token }).auth.me());

  test("alg none is UNAUTHORIZED", async () => {
    const { deps, claims } = await victim();
    expect(await meWith(deps, `${b64({ alg: "none", typ: "JWT" })}.${b64(claims)}.`)).toBe("UNAUTHORIZED");
  });

  test("a token signed with another key is UNAUTHORIZED", async () => {
    const { deps, claims } = await victim();
    const token = await new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode("x".repeat(48)));
    expect(await meWith(deps, token)).toBe("UNAUTHORIZED");
  });

  test("a token signed with the right key but not the one issued for that session is UNAUTHORIZED", async () => {
    // Only the exact token whose hash the session row holds is accepted.
    const { deps, claims } = await victim();
    const token = await new SignJWT({ ...claims, jti: crypto.randomUUID() })
      .setProtectedHeader({ alg: "HS256" })
      .sign(createTokenConfig(TEST_JWT_SECRET, 3600).secret);
    expect(await meWith(deps, token)).toBe("UNAUTHORIZED");
  });

  test("an expired token is UNAUTHORIZED (the clock moved past exp)", async () => {
    const { deps, clock, signed } = await victim();
    expect(await meWith(deps, signed.accessToken)).toBe("no error");
    clock.advance(deps.env.SESSION_TTL_SECONDS + 1);
    expect(await meWith(deps, signed.accessToken)).toBe("UNAUTHORIZED");
  });

  test("a session row past its expiry is UNAUTHORIZED even while the JWT's exp is ahead", async () => {
    const { deps, signed, session } = await victim();
    await handle.db.update(sessions).set({ expiresAt: "2000-01-01 00:00:00" }).where(eq(sessions.id, session.id));
    expect(await meWith(deps, signed.accessToken)).toBe("UNAUTHORIZED");
  });

  test("a tampered payload is UNAUTHORIZED", async () => {
    const { deps, signed, claims } = await victim();
    const other = await signUp(deps);
    const [header, , signature] = signed.accessToken.split(".");
    expect(await meWith(deps, `${header}.${b64({ ...claims, sub: other.user.id })}.${signature}`)).toBe("UNAUTHORIZED");
    expect(await meWith(deps, `${header}.${b64({ ...claims, exp: claims.exp + 10 ** 6 })}.${signature}`)).toBe("UNAUTHORIZED");
  });

  test("garbage is UNAUTHORIZED", async () => {
    const { deps } = await victim();
    for (const token of ["garbage", "a.b.c", "Bearer", `${"A".repeat(5000)}`]) {
      expect(await meWith(deps, token)).toBe("UNAUTHORIZED");
    }
  });

  test("a token whose session was revoked is UNAUTHORIZED at once", async () => {
    const { deps, signed, session } = await victim();
    const other = await callerFor(deps).auth.login({ email: signed.user.email, password: signed.password });
    await callerFor(deps, { token: other.accessToken }).auth.revokeSession({ sessionId: session.id });
    expect(await meWith(deps, signed.accessToken)).toBe("UNAUTHORIZED");
    expect(await meWith(deps, other.accessToken)).toBe("no error");
  });

  test("a token of a deleted user is UNAUTHORIZED", async () => {
    const { deps, signed } = await victim();
    await handle.db.delete(users).where(eq(users.id, signed.user.id));
    expect(await meWith(deps, signed.accessToken)).toBe("UNAUTHORIZED");
  });

  test("a token is only a bearer token: other schemes and extra words are refused", async () => {
    const { deps, signed } = await victim();
    const app = createApp(deps);
    for (const authorization of [`Basic ${signed.accessToken}`, `Bearer ${signed.accessToken} extra`, signed.accessToken]) {
      const res = await app.request("/trpc/auth.me", { headers: { authorization } });
      expect(res.status).toBe(401);
    }
    expect((await app.request("/trpc/auth.me", { headers: { authorization: `Bearer ${signed.accessToken}` } })).status).toBe(200);
  });

  test("no response, success or error, carries a password hash, a token hash or the password", async () => {
    const deps = createTestDeps(handle.db);
    const app = createApp(deps);
    const password = "Sup3r-Secret-Passw0rd";
    const email = uniqueEmail();
    const bodies: string[] = [];
    const call = async (path: string, init: { input?: unknown; token?: string; method?: "GET" | "POST" } = {}) => {
      const method = init.method ?? "POST";
      const url =
        method === "GET" && init.input !== undefined
          ? `/trpc/${path}?input=${encodeURIComponent(JSON.stringify(init.input))}`
          : `/trpc/${path}`;
      const res = await app.request(url, {
        method,
        headers: { "content-type": "application/json", ...(init.token ? { authorization: `Bearer ${init.token}` } : {}) },
        ...(method === "POST" && init.input !== undefined ? { body: JSON.stringify(init.input) } : {}),
      });
      const text = await res.text();
      bodies.push(text);
      return JSON.parse(text) as { result?: { data: Record<string, unknown> } };
    };
    const registered = (await call("auth.register", { input: { email, password } })).result!.data as { accessToken: string };
    const token = registered.accessToken;
    await call("auth.register", { input: { email, password } }); // CONFLICT
    await call("auth.register", { input: { email: "bad", password } }); // validation
    await call("auth.login", { input: { email, password: `${password}x` } }); // wrong password
    const login = (await call("auth.login", { input: { email, password } })).result!.data as { accessToken: string };
    await call("auth.me", { method: "GET", token });
    await call("auth.sessions", { method: "GET", token });
    await call("auth.refresh", { token: login.accessToken });
    await call("auth.changePassword", { token, input: { currentPassword: `${password}x`, newPassword: password } });
    const changed = (await call("auth.changePassword", { token, input: { currentPassword: password, newPassword: `${password}2` } }))
      .result!.data as { accessToken: string };
    await call("auth.revokeSession", { token: changed.accessToken, input: { sessionId: crypto.randomUUID() } });
    await call("auth.logoutAll", { token: changed.accessToken });
    await call("auth.me", { method: "GET", token: changed.accessToken });

    const [row] = await handle.db.select().from(users).where(eq(users.email, email));
    // The stored hashes of every token these calls were issued (sessions are gone after logoutAll).
    const tokenHashes = await Promise.all([token, login.accessToken, changed.accessToken].map(hashToken));
    const all = bodies.join("\n");
    expect(bodies.length).toBe(13);
    for (const forbidden of [
      "password_hash",
      "passwordHash",
      "token_hash",
      "tokenHash",
      "$argon2",
      row.passwordHash,
      password,
      ...tokenHashes,
    ]) {
      expect(all).not.toContain(forbidden);
    }
  });

  test("register validation errors never echo the password (short, long, wrong type, with a bad email)", async () => {
    const app = createApp(createTestDeps(handle.db));
    const secret = "pw-7Xq";
    const inputs = [
      { email: uniqueEmail(), password: secret },
      { email: uniqueEmail(), password: `${secret}${"y".repeat(130)}` },
      { email: `${secret}@@nope`, password: `${secret}-long-enough` },
      { email: uniqueEmail(), password: [`${secret}-in-an-array`] },
    ];
    for (const input of inputs) {
      const res = await app.request("/trpc/auth.register", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(input),
      });
      expect(res.status).toBe(400);
      expect(await res.text()).not.toContain(secret);
    }
  });
});

describe("auth: throttling", () => {
  test("the 11th attempt within 15 minutes is refused, even with the right password, until the window passes", async () => {
    const clock = createTestClock();
    const deps = createTestDeps(handle.db, { clock });
    const { user, password } = await signUp(deps);
    for (let i = 0; i < 10; i++) {
      expect(await errorCodeOf(callerFor(deps).auth.login({ email: user.email, password: WRONG }))).toBe("UNAUTHORIZED");
    }
    expect(await errorCodeOf(callerFor(deps).auth.login({ email: user.email, password }))).toBe("TOO_MANY_REQUESTS");
    // Refused before the hash: not counted again (the window still ends 15 minutes after the first).
    expect(await throttleFailures(emailKey(user.email))).toBe(10);
    clock.advance(15 * 60 + 1);
    const auth = await callerFor(deps).auth.login({ email: user.email, password });
    expect(auth.user.id).toBe(user.id);
  });

  test("the window is fixed from the first failure and the refusal says when to retry", async () => {
    const clock = createTestClock(new Date("2026-11-24T12:00:00.000Z"));
    const deps = createTestDeps(handle.db, { clock });
    const { user, password } = await signUp(deps);
    for (let i = 0; i < 5; i++) await errorCodeOf(callerFor(deps).auth.login({ email: user.email, password: WRONG }));
    clock.advance(14 * 60);
    for (let i = 0; i < 5; i++) await errorCodeOf(callerFor(deps).auth.login({ email: user.email, password: WRONG }));
    const refused = await errorOf(callerFor(deps).auth.login({ email: user.email, password }));
    expect(refused.code).toBe("TOO_MANY_REQUESTS");
    expect((refused.cause as { details: { retryAfterSeconds: number } }).details.retryAfterSeconds).toBe(60);
    expect(refused.message).toContain("60 seconds");
    // 15 minutes after the FIRST failure the window is over, although the last one was a minute ago.
    clock.advance(61);
    expect((await callerFor(deps).auth.login({ email: user.email, password })).user.id).toBe(user.id);
  });

  test("unknown emails are throttled too", async () => {
    const deps = createTestDeps(handle.db, { clock: createTestClock() });
    const email = uniqueEmail("nobody");
    const codes: string[] = [];
    for (let i = 0; i < 11; i++) codes.push(await errorCodeOf(callerFor(deps).auth.login({ email, password: WRONG })));
    expect(codes.slice(0, 10)).toEqual(Array(10).fill("UNAUTHORIZED"));
    expect(codes[10]).toBe("TOO_MANY_REQUESTS");
  });

  test("other accounts are not affected by one throttled email, from the same address", async () => {
    const deps = createTestDeps(handle.db, { clock: createTestClock() });
    const victimUser = await signUp(deps);
    const bystander = await signUp(deps);
    for (let i = 0; i < 11; i++) await errorCodeOf(callerFor(deps).auth.login({ email: victimUser.user.email, password: WRONG }));
    expect(await errorCodeOf(callerFor(deps).auth.login({ email: victimUser.user.email, password: victimUser.password }))).toBe(
      "TOO_MANY_REQUESTS",
    );
    const ok = await callerFor(deps).auth.login({ email: bystander.user.email, password: bystander.password });
    expect(ok.user.id).toBe(bystander.user.id);
  });

  test("a success resets the email's counter", async () => {
    const deps = createTestDeps(handle.db, { clock: createTestClock() });
    const { user, password } = await signUp(deps);
    for (let i = 0; i < 9; i++) await errorCodeOf(callerFor(deps).auth.login({ email: user.email, password: WRONG }));
    await callerFor(deps).auth.login({ email: user.email, password });
    // The row stays (for the next count to update) with nothing counted.
    expect(await throttleFailures(emailKey(user.email))).toBe(0);
    const codes: string[] = [];
    for (let i = 0; i < 11; i++) codes.push(await errorCodeOf(callerFor(deps).auth.login({ email: user.email, password: WRONG })));
    expect(codes.slice(0, 10)).toEqual(Array(10).fill("UNAUTHORIZED"));
    expect(codes[10]).toBe("TOO_MANY_REQUESTS");
  });

  test("one client address is limited to 100 failures per window, across emails; other addresses are not", async () => {
    const deps = createTestDeps(handle.db, { clock: createTestClock() });
    const { user, password } = await signUp(deps);
    const attacker = { clientAddress: "198.51.100.66" };
    for (let e = 0; e < 10; e++) {
      const email = uniqueEmail("spray");
      for (let i = 0; i < 10; i++) {
        expect(await errorCodeOf(callerFor(deps, attacker).auth.login({ email, password: WRONG }))).toBe("UNAUTHORIZED");
      }
    }
    // A fresh email from the same address: the address is over its limit.
    expect(await errorCodeOf(callerFor(deps, attacker).auth.login({ email: uniqueEmail("fresh"), password: WRONG }))).toBe(
      "TOO_MANY_REQUESTS",
    );
    expect(await errorCodeOf(callerFor(deps, attacker).auth.login({ email: user.email, password }))).toBe("TOO_MANY_REQUESTS");
    // The same account from another address is fine.
    const ok = await callerFor(deps, { clientAddress: "192.0.2.10" }).auth.login({ email: user.email, password });
    expect(ok.user.id).toBe(user.id);
  });

  test("expired throttle rows are pruned", async () => {
    const clock = createTestClock();
    const deps = createTestDeps(handle.db, { clock });
    for (let i = 0; i < 3; i++) await errorCodeOf(callerFor(deps).auth.login({ email: uniqueEmail(), password: WRONG }));
    expect(await pruneExpiredThrottles(handle.db, clock(), 2)).toBe(0);
    clock.advance(15 * 60 + 1);
    expect(await pruneExpiredThrottles(handle.db, clock(), 2)).toBe(4); // three emails and one address
    expect(await queryRows(handle.db, sql`select key from login_throttle`)).toEqual([]);
  });

  describe("over real HTTP", () => {
    const clock = createTestClock();
    const server = serveInProcess(createTestDeps(handle.db, { clock }));
    afterAll(() => server.stop());

    const postBatch = (calls: number, inputs: unknown[], headers: Record<string, string> = {}) =>
      fetch(`${server.baseUrl}/trpc/${Array(calls).fill("auth.login").join(",")}?batch=1`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(Object.fromEntries(inputs.map((input, i) => [String(i), input]))),
      });

    test("one batched request carrying 50 logins counts 50 attempts", async () => {
      const { user } = await signUp(createTestDeps(handle.db, { clock }));
      const res = await postBatch(50, Array(50).fill({ email: user.email, password: WRONG }));
      const results = (await res.json()) as Array<{ error?: { data: { code: string } } }>;
      expect(results).toHaveLength(50);
      const codes = results.map((r) => r.error?.data.code);
      expect(codes.filter((c) => c === "UNAUTHORIZED")).toHaveLength(10);
      expect(codes.filter((c) => c === "TOO_MANY_REQUESTS")).toHaveLength(40);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(await throttleFailures(emailKey(user.email))).toBe(50);
      expect(await throttleFailures("ip:127.0.0.1")).toBe(50);
    });

    test(`a batch of more than ${MAX_BATCH_SIZE} calls is refused before any of them runs`, async () => {
      const email = uniqueEmail("batch");
      const res = await postBatch(MAX_BATCH_SIZE + 1, Array(MAX_BATCH_SIZE + 1).fill({ email, password: WRONG }));
      expect(res.status).toBe(400);
      expect(await res.text()).toContain("Too many calls in one batched request");
      expect(await throttleFailures(emailKey(email))).toBeUndefined();
    });

    test("x-forwarded-for is not believed without TRUST_PROXY: a rotating header does not dodge the limit", async () => {
      const email = uniqueEmail("xff");
      const codes: string[] = [];
      for (let i = 0; i < 11; i++) {
        const res = await postBatch(1, [{ email, password: WRONG }], { "x-forwarded-for": `10.0.0.${i}` });
        codes.push(((await res.json()) as Array<{ error: { data: { code: string } } }>)[0].error.data.code);
      }
      expect(codes[10]).toBe("TOO_MANY_REQUESTS");
      expect(await throttleFailures("ip:10.0.0.3")).toBeUndefined();
    });

    test("on the Bun host a forged cf-connecting-ip is ignored: rotating it does not dodge the address limit", async () => {
      const codes: string[] = [];
      for (let i = 0; i < 11; i++) {
        const res = await postBatch(1, [{ email: uniqueEmail("cf"), password: WRONG }], { "cf-connecting-ip": `198.18.0.${i}` });
        codes.push(((await res.json()) as Array<{ error: { data: { code: string } } }>)[0].error.data.code);
      }
      expect(await throttleFailures("ip:127.0.0.1")).toBe(11);
      expect(await throttleFailures("ip:198.18.0.3")).toBeUndefined();
    });
  });

  describe("which address counts", () => {
    const h = (entries: Record<string, string>) => new Headers(entries);
    test("Bun host without TRUST_PROXY: the socket address, whatever the headers say", () => {
      expect(clientAddressOf(h({ "cf-connecting-ip": "1.1.1.1", "x-forwarded-for": "2.2.2.2" }), "10.0.0.5", false)).toBe("10.0.0.5");
    });
    test("Bun host behind a trusted proxy: cf-connecting-ip, else the LAST x-forwarded-for entry (the one the proxy added)", () => {
      expect(clientAddressOf(h({ "x-forwarded-for": "6.6.6.6, 203.0.113.9" }), "10.0.0.5", true)).toBe("203.0.113.9");
      expect(clientAddressOf(h({ "x-forwarded-for": "203.0.113.9" }), "10.0.0.5", true)).toBe("203.0.113.9");
      expect(clientAddressOf(h({ "cf-connecting-ip": "198.51.100.1", "x-forwarded-for": "6.6.6.6" }), "10.0.0.5", true)).toBe(
        "198.51.100.1",
      );
      expect(clientAddressOf(h({}), "10.0.0.5", true)).toBe("10.0.0.5");
      expect(clientAddressOf(h({ "x-forwarded-for": "x".repeat(5000) }), "10.0.0.5", true).length).toBeLessThanOrEqual(64);
    });
    test("Worker (no socket): cf-connecting-ip, set by Cloudflare", () => {
      expect(clientAddressOf(h({ "cf-connecting-ip": "198.51.100.1" }), undefined, false)).toBe("198.51.100.1");
      expect(clientAddressOf(h({ "x-forwarded-for": "6.6.6.6" }), undefined, false)).toBe("unknown");
    });
  });
});

describe.if(onPostgres)("auth: concurrency on real Postgres", () => {
  test("racing registrations of one email: exactly one account, the others CONFLICT, never a 500", async () => {
    const deps = createTestDeps(handle.db);
    const email = uniqueEmail("race");
    const variants = [email, email.toUpperCase(), ` ${email}`, `${email} `, email, email, email, email];
    const results = await Promise.allSettled(variants.map((e) => callerFor(deps).auth.register({ email: e, password: "racing password" })));
    const codes = results.map((r) => (r.status === "fulfilled" ? "ok" : (r.reason as { code: string }).code));
    expect(codes.filter((c) => c === "ok")).toHaveLength(1);
    expect(codes.filter((c) => c === "CONFLICT")).toHaveLength(variants.length - 1);
    expect(await handle.db.select().from(users).where(eq(users.email, email))).toHaveLength(1);
  });

  test("counting and forgiving the attempts of one email from one address, racing: never a deadlock", async () => {
    // A password change counts (email, then address) before the hash and forgives after it
    // (reserveLoginAttempt, forgiveAttempt); the sign-in did the same until it moved to counting
    // after the hash. Postgres runs data-modifying CTEs in no set order; with the address's row
    // taken first in the forgiving CTEs, two attempts of one account deadlocked (40P01, a 500
    // after deadlock_timeout): pgbench of the two statements ran at 22 tps instead of 1,800.
    // Raced here without the hash between them, with an INSERT as the main query.
    const email = uniqueEmail("deadlock");
    const address = "203.0.113.77";
    const now = new Date();
    const db = handle.db;
    const forgiveInsideInsert = () =>
      db.execute(
        sql`with ${forgiveAttemptCtes(db, email, address)} ${auditInsert(db, systemAudit(now), { action: "auth.login" }).getSQL()}`,
      );
    const codes: string[] = [];
    for (let round = 0; round < 200; round++) {
      const calls = Array.from({ length: 12 }, (_, i) =>
        errorCodeOf(i % 2 ? forgiveInsideInsert() : reserveLoginAttempt(db, email, address, now)),
      );
      codes.push(...(await Promise.all(calls)));
    }
    expect(codes.filter((c) => c !== "no error" && c !== "TOO_MANY_REQUESTS")).toEqual([]);
  });

  test("right and wrong passwords of one account from one address, racing: never a deadlock, the count exact", async () => {
    // A failure counts (email, then address) in one upsert; a success only clears the email's
    // row: no two statements of a sign-in take the two rows in opposite orders.
    const deps = createTestDeps(handle.db);
    const { user, password } = await signUp(deps);
    const codes: string[] = [];
    // Three wrong ones a round, three rounds: the email never reaches its bar of 10, so every
    // answer is known: the right ones sign in, the wrong ones are UNAUTHORIZED.
    for (let round = 0; round < 3; round++) {
      const calls = Array.from({ length: 6 }, (_, i) =>
        errorCodeOf(callerFor(deps).auth.login({ email: user.email, password: i % 2 ? password : WRONG })),
      );
      codes.push(...(await Promise.all(calls)));
    }
    expect(codes).toEqual(Array.from({ length: 18 }, (_, i) => (i % 2 ? "no error" : "UNAUTHORIZED")));
    // Every wrong password was counted on the address (successes never touch its row).
    expect(await throttleFailures("ip:203.0.113.7")).toBe(9);
  });

  test("racing ensureAdmin runs (two instances starting together) leave one admin row", async () => {
    await Promise.all([1, 2, 3].map(() => ensureAdmin(handle.db, "racing-admin@example.com", "admin password")));
    const rows = await handle.db.select().from(users).where(eq(users.email, "racing-admin@example.com"));
    expect(rows.map((r) => r.role)).toEqual(["admin"]);
  });
});
