import { beforeEach, describe, expect, test } from "bun:test";
import { callerFor, createTestClock, createTestDeps, errorCodeOf, signUp, uniqueEmail } from "../support/app";
import { getTestDatabase, resetDatabase } from "../support/db";

const handle = await getTestDatabase();
beforeEach(() => resetDatabase(handle));

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
});

describe("auth: throttling", () => {
  test("the 11th attempt within 15 minutes is refused, even with the right password, until the window passes", async () => {
    const clock = createTestClock();
    const deps = createTestDeps(handle.db, { clock });
    const { user, password } = await signUp(deps);
    for (let i = 0; i < 10; i++) {
      expect(await errorCodeOf(callerFor(deps).auth.login({ email: user.email, password: "wrong password" }))).toBe("UNAUTHORIZED");
    }
    expect(await errorCodeOf(callerFor(deps).auth.login({ email: user.email, password }))).toBe("TOO_MANY_REQUESTS");
    clock.advance(15 * 60 + 1);
    const auth = await callerFor(deps).auth.login({ email: user.email, password });
    expect(auth.user.id).toBe(user.id);
  });
});
