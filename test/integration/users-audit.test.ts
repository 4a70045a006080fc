// The users router (admin control of accounts) and the audit trail (audit.list, one event per
// change in the change's own transaction, pruning, no secrets in details).
import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import { queryRows } from "../../src/db/client";
import { accountStatus, auditEvents, products, users } from "../../src/db/schema";
import { runPruneSessions } from "../../src/jobs/prune-sessions";
import { toDbTime } from "../../src/lib/time";
import { type AuditContext, auditActions } from "../../src/services/audit";
import { adjustStock } from "../../src/services/inventory";
import { createProduct } from "../../src/services/products";
import { callerFor, createTestClock, createTestDeps, errorCodeOf, insertProducts, signUp, signUpAdmin, uniqueEmail } from "../support/app";
import { getTestDatabase, onPostgres, resetDatabase } from "../support/db";
import { createMailbox } from "../support/mail";

setDefaultTimeout(120_000);

const handle = await getTestDatabase();
const box = await createMailbox();
beforeEach(() => resetDatabase(handle));

// Every password these tests use, and every token mailed: none may ever appear in an event.
const secrets = new Set<string>(["correct horse battery", "admin password 123", "a fresh and long passphrase", "violet staple ferry 93"]);

afterEach(async () => {
  const events = await handle.db.select().from(auditEvents);
  for (const e of events) {
    const text = JSON.stringify(e.details);
    for (const s of secrets) expect(text).not.toContain(s);
    expect(text).not.toMatch(/\$argon2|[0-9a-f]{64}|[A-Za-z0-9_-]{43}|eyJ[A-Za-z0-9_-]+\./);
  }
});

const deps = () => createTestDeps(handle.db, { mail: box.transport });

async function eventsOf(action?: string) {
  const rows = await handle.db.select().from(auditEvents);
  return action ? rows.filter((r) => r.action === action) : rows;
}

describe("users: happy path", () => {
  test("list: newest first, email substring search (literal % and _), role filter, keyset paging", async () => {
    const d = deps();
    const admin = await signUpAdmin(d);
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await signUp(d, uniqueEmail(`pager_${i}`))).user.id);
    const page1 = await admin.caller.users.list({ limit: 2, search: "pager_" });
    expect(page1.items.map((u) => u.id)).toEqual([made[4], made[3]]);
    const page2 = await admin.caller.users.list({ limit: 2, search: "pager_", cursor: page1.nextCursor });
    const page3 = await admin.caller.users.list({ limit: 2, search: "pager_", cursor: page2.nextCursor });
    expect([...page2.items, ...page3.items].map((u) => u.id)).toEqual([made[2], made[1], made[0]]);
    expect(page3.nextCursor).toBeNull();
    expect((await admin.caller.users.list({ search: "%" })).items).toEqual([]);
    const admins = await admin.caller.users.list({ role: "admin" });
    expect(admins.items.map((u) => u.id)).toEqual([admin.user.id]);
    expect(admins.items[0]).toMatchObject({ role: "admin", emailVerified: false, disabled: false });
    expect(JSON.stringify(admins)).not.toMatch(/argon2|passwordHash|password_hash/);
  });

  test("byId, setRole, revokeSessions, disable, enable", async () => {
    const d = deps();
    const admin = await signUpAdmin(d);
    const user = await signUp(d);
    expect(await admin.caller.users.byId({ id: user.user.id })).toMatchObject({ id: user.user.id, role: "customer" });
    expect(await admin.caller.users.setRole({ id: user.user.id, role: "admin" })).toMatchObject({ role: "admin" });
    expect(await admin.caller.users.setRole({ id: user.user.id, role: "customer" })).toMatchObject({ role: "customer" });
    expect(await admin.caller.users.revokeSessions({ id: user.user.id })).toEqual({ ok: true, revoked: 1 });
    expect(await admin.caller.users.disable({ id: user.user.id })).toMatchObject({ disabled: true });
    expect(await admin.caller.users.enable({ id: user.user.id })).toMatchObject({ disabled: false });
    await callerFor(d).auth.login({ email: user.user.email, password: user.password });
  });

  test("a role change takes effect on the user's very next request, with the token they hold", async () => {
    const d = deps();
    const admin = await signUpAdmin(d);
    const user = await signUp(d);
    expect(await errorCodeOf(user.caller.users.list())).toBe("FORBIDDEN");
    await admin.caller.users.setRole({ id: user.user.id, role: "admin" });
    expect((await user.caller.users.list()).items.length).toBeGreaterThan(0);
    await admin.caller.users.setRole({ id: user.user.id, role: "customer" });
    expect(await errorCodeOf(user.caller.users.list())).toBe("FORBIDDEN");
  });

  test("a disabled user's live token is refused on its next request; sign-in gives the wrong-password answer", async () => {
    const d = deps();
    const admin = await signUpAdmin(d);
    const user = await signUp(d);
    await user.caller.auth.me();
    await admin.caller.users.disable({ id: user.user.id });
    expect(await errorCodeOf(user.caller.auth.me())).toBe("UNAUTHORIZED");
    const wrong = await callerFor(d)
      .auth.login({ email: user.user.email, password: "not the password" })
      .catch((e) => e);
    const disabled = await callerFor(d)
      .auth.login({ email: user.user.email, password: user.password })
      .catch((e) => e);
    expect(disabled.code).toBe("UNAUTHORIZED");
    expect(disabled.message).toBe(wrong.message);
  });

  test("revokeSessions ends the user's tokens on their next request", async () => {
    const d = deps();
    const admin = await signUpAdmin(d);
    const user = await signUp(d);
    await admin.caller.users.revokeSessions({ id: user.user.id });
    expect(await errorCodeOf(user.caller.auth.me())).toBe("UNAUTHORIZED");
  });
});

describe("users: errors", () => {
  test("customers are FORBIDDEN, anonymous callers UNAUTHORIZED, everywhere in users and audit", async () => {
    const d = deps();
    const user = await signUp(d);
    const id = user.user.id;
    for (const c of [user.caller, callerFor(d)]) {
      const expected = c === user.caller ? "FORBIDDEN" : "UNAUTHORIZED";
      expect(await errorCodeOf(c.users.list())).toBe(expected);
      expect(await errorCodeOf(c.users.byId({ id }))).toBe(expected);
      expect(await errorCodeOf(c.users.setRole({ id, role: "admin" }))).toBe(expected);
      expect(await errorCodeOf(c.users.revokeSessions({ id }))).toBe(expected);
      expect(await errorCodeOf(c.users.disable({ id }))).toBe(expected);
      expect(await errorCodeOf(c.users.enable({ id }))).toBe(expected);
      expect(await errorCodeOf(c.audit.list())).toBe(expected);
    }
    expect((await handle.db.select().from(users).where(eq(users.id, id)))[0]!.role).toBe("customer");
  });

  test("unknown id → NOT_FOUND, malformed id or role → BAD_REQUEST, bad cursor → BAD_REQUEST", async () => {
    const admin = await signUpAdmin(deps());
    const unknown = "00000000-0000-4000-8000-000000000000";
    expect(await errorCodeOf(admin.caller.users.byId({ id: unknown }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(admin.caller.users.disable({ id: unknown }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(admin.caller.users.setRole({ id: unknown, role: "admin" }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(admin.caller.users.byId({ id: "nope" }))).toBe("BAD_REQUEST");
    expect(await errorCodeOf(admin.caller.users.setRole({ id: admin.user.id, role: "root" as never }))).toBe("BAD_REQUEST");
    expect(await errorCodeOf(admin.caller.users.list({ cursor: "garbage" }))).toBe("BAD_REQUEST");
    expect(await errorCodeOf(admin.caller.audit.list({ cursor: "garbage" }))).toBe("BAD_REQUEST");
    expect(await errorCodeOf(admin.caller.audit.list({ action: "made.up" as never }))).toBe("BAD_REQUEST");
  });

  test("the last admin can be neither demoted nor disabled (CONFLICT), and nothing changes", async () => {
    const d = deps();
    const admin = await signUpAdmin(d);
    expect(await errorCodeOf(admin.caller.users.setRole({ id: admin.user.id, role: "customer" }))).toBe("CONFLICT");
    expect(await errorCodeOf(admin.caller.users.disable({ id: admin.user.id }))).toBe("CONFLICT");
    expect(await admin.caller.auth.me()).toMatchObject({ role: "admin", disabled: false });
    expect(await eventsOf("users.role_changed")).toHaveLength(0);
    expect(await eventsOf("users.disabled")).toHaveLength(0);
    // With a second admin, a demotion is allowed; a disabled admin does not count as the other one.
    const second = await signUpAdmin(d);
    await admin.caller.users.disable({ id: second.user.id });
    expect(await errorCodeOf(admin.caller.users.setRole({ id: admin.user.id, role: "customer" }))).toBe("CONFLICT");
    await admin.caller.users.enable({ id: second.user.id });
    await admin.caller.users.setRole({ id: admin.user.id, role: "customer" });
  });

  test("two admins demoting or disabling each other at once: exactly one succeeds, one enabled admin remains", async () => {
    const d = deps();
    for (let round = 0; round < (onPostgres ? 5 : 2); round++) {
      await resetDatabase(handle);
      const a = await signUpAdmin(d);
      const b = await signUpAdmin(d);
      const results = await Promise.allSettled([
        a.caller.users.setRole({ id: b.user.id, role: "customer" }),
        b.caller.users.disable({ id: a.user.id }),
      ]);
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      const rejected = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
      // CONFLICT from the guard, or the loser's own token already refused (demoted/disabled first).
      expect(["CONFLICT", "FORBIDDEN", "UNAUTHORIZED"]).toContain(rejected.reason.code);
      const rows = await queryRows<{ n: number }>(
        handle.db,
        sql`select count(*)::int as n from ${users} left join ${accountStatus} on ${accountStatus.userId} = ${users.id}
             where ${users.role} = 'admin' and coalesce(${accountStatus.disabled}, false) = false`,
      );
      expect(Number(rows[0]!.n)).toBe(1);
    }
  });
});

describe("audit: every change leaves exactly one event, in its own transaction", () => {
  test("each audited action of the contract writes one event with actor, target, address, request id", async () => {
    const d = deps();
    const admin = await signUpAdmin(d);
    const user = await signUp(d);
    const anon = callerFor(d);
    await anon.auth.login({ email: user.user.email, password: "wrong password" }).catch(() => {});
    await anon.auth.login({ email: "nobody@example.com", password: "wrong password" }).catch(() => {});
    const second = await anon.auth.login({ email: user.user.email, password: user.password });
    await callerFor(d, { token: second.accessToken }).auth.logout();
    const third = await anon.auth.login({ email: user.user.email, password: user.password });
    const sessions = await callerFor(d, { token: third.accessToken }).auth.sessions();
    await callerFor(d, { token: third.accessToken }).auth.revokeSession({ sessionId: sessions.find((s) => !s.current)!.id });
    const changed = await callerFor(d, { token: third.accessToken }).auth.changePassword({
      currentPassword: user.password,
      newPassword: "violet staple ferry 93",
    });
    await callerFor(d, { token: changed.accessToken }).auth.logoutAll();
    await anon.auth.requestPasswordReset({ email: user.user.email });
    const resetToken = await box.tokenFor(d, user.user.email, "reset-password");
    secrets.add(resetToken);
    const afterReset = await anon.auth.resetPassword({ token: resetToken, newPassword: "a fresh and long passphrase" });
    const verifyToken = await box.tokenFor(d, user.user.email, "verify-email");
    secrets.add(verifyToken);
    await anon.auth.verifyEmail({ token: verifyToken });
    await admin.caller.users.setRole({ id: user.user.id, role: "admin" });
    await admin.caller.users.setRole({ id: user.user.id, role: "customer" });
    await admin.caller.users.revokeSessions({ id: user.user.id });
    await admin.caller.users.disable({ id: user.user.id });
    await admin.caller.users.enable({ id: user.user.id });
    const product = await admin.caller.products.create({ name: "Audited lamp", price: "10.00", stock: 5 });
    await admin.caller.products.update({ id: product.id, price: "12.50" });
    await admin.caller.inventory.adjust({ productId: product.id, delta: -2 });
    await admin.caller.inventory.set({ productId: product.id, stock: 40 });
    const buyer = await anon.auth.login({ email: user.user.email, password: "a fresh and long passphrase" });
    const buyerCaller = callerFor(d, { token: buyer.accessToken });
    const order = await buyerCaller.orders.create({ items: [{ productId: product.id, quantity: 1 }] });
    const order2 = await buyerCaller.orders.create({ items: [{ productId: product.id, quantity: 1 }] });
    await buyerCaller.orders.cancel({ id: order.id });
    await admin.caller.orders.updateStatus({ id: order2.id, status: "processing" });
    const doomed = await admin.caller.products.create({ name: "Doomed", price: "1.00" });
    await admin.caller.products.delete({ id: doomed.id });

    const events = await eventsOf();
    const count = (action: string) => events.filter((e) => e.action === action).length;
    expect(count("auth.register")).toBe(2);
    expect(count("auth.login_failed")).toBe(2);
    expect(count("users.role_changed")).toBe(2 + 0); // the two setRole calls (signUpAdmin promotes in SQL)
    for (const action of [
      "auth.logout",
      "auth.session_revoked",
      "auth.password_changed",
      "auth.logout_all",
      "auth.password_reset_requested",
      "auth.password_reset",
      "auth.email_verified",
      "users.sessions_revoked",
      "users.disabled",
      "users.enabled",
      "products.updated",
      "inventory.adjusted",
      "inventory.set",
      "orders.cancelled",
      "orders.status_changed",
      "products.deleted",
    ]) {
      expect({ action, n: count(action) }).toEqual({ action, n: 1 });
    }
    expect(count("products.created")).toBe(2);
    // Every action of the contract was exercised here.
    for (const action of auditActions) expect(count(action)).toBeGreaterThan(0);

    const byAction = (a: string) => events.find((e) => e.action === a)!;
    expect(byAction("products.updated")).toMatchObject({
      actorId: admin.user.id,
      targetType: "product",
      targetId: product.id,
      ip: "203.0.113.7",
      requestId: "test-request",
      details: { oldPrice: "10.00", newPrice: "12.50" },
    });
    expect(byAction("inventory.adjusted").details).toEqual({ delta: -2, oldStock: 5, newStock: 3 });
    expect(byAction("inventory.set").details).toEqual({ oldStock: 3, newStock: 40 });
    expect(byAction("orders.cancelled")).toMatchObject({
      actorId: user.user.id,
      targetType: "order",
      targetId: order.id,
      details: { oldStatus: "pending", newStatus: "cancelled" },
    });
    expect(byAction("orders.status_changed").details).toEqual({ oldStatus: "pending", newStatus: "processing" });
    expect(events.filter((e) => e.action === "users.role_changed").map((e) => e.details)).toContainEqual({
      oldRole: "customer",
      newRole: "admin",
    });
    expect(byAction("auth.password_reset")).toMatchObject({ actorId: null, targetId: user.user.id });
    expect(afterReset.user.id).toBe(user.user.id);
    const failed = events.filter((e) => e.action === "auth.login_failed");
    expect(failed.map((e) => e.targetId).sort()).toEqual([null, user.user.id].sort() as never);
    expect(byAction("auth.password_reset_requested").targetId).toBe(user.user.id);
  });

  test("a failed action leaves no event", async () => {
    const d = deps();
    const admin = await signUpAdmin(d);
    const before = (await eventsOf()).length;
    const [p] = await insertProducts(handle.db, [{ price: "5.00", stock: 1 }]);
    const unknown = "00000000-0000-4000-8000-000000000000";
    expect(await errorCodeOf(admin.caller.inventory.adjust({ productId: p!.id, delta: -5 }))).toBe("CONFLICT");
    expect(await errorCodeOf(admin.caller.products.update({ id: unknown, price: "1.00" }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(admin.caller.inventory.set({ productId: unknown, stock: 1 }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(admin.caller.products.delete({ id: unknown }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(admin.caller.orders.updateStatus({ id: unknown, status: "shipped" }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(admin.caller.auth.revokeSession({ sessionId: unknown }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(callerFor(d).auth.resetPassword({ token: "C".repeat(43), newPassword: "violet staple ferry 93" }))).toBe(
      "BAD_REQUEST",
    );
    expect(await eventsOf()).toHaveLength(before);
  });

  test("rolled back mid-way: the change and its event go together", async () => {
    const before = (await eventsOf()).length;
    // The change ran, then the transaction around it failed: neither the product nor its event stays.
    const ctx: AuditContext = { actorId: null, ip: "198.51.100.9", requestId: "rollback-test", now: new Date() };
    await handle.db
      .transaction(async (tx) => {
        await createProduct(tx, { name: "Rolled back", price: "3.00" }, ctx);
        throw new Error("fail after the change");
      })
      .catch(() => {});
    expect(await handle.db.select().from(products).where(eq(products.name, "Rolled back"))).toHaveLength(0);
    // The event cannot be written (request id longer than its column): the change is undone too.
    const [p] = await insertProducts(handle.db, [{ price: "5.00", stock: 10 }]);
    const broken: AuditContext = { ...ctx, requestId: "r".repeat(500) };
    await expect(adjustStock(handle.db, { productId: p!.id, delta: 5 }, broken)).rejects.toBeDefined();
    expect((await handle.db.select().from(products).where(eq(products.id, p!.id)))[0]!.stock).toBe(10);
    await expect(createProduct(handle.db, { name: "No event, no product", price: "1.00" }, broken)).rejects.toBeDefined();
    expect(await handle.db.select().from(products).where(eq(products.name, "No event, no product"))).toHaveLength(0);
    expect(await eventsOf()).toHaveLength(before);
  });
});

describe("audit.list", () => {
  test("filters by actorId, targetId and action exactly; keyset pages newest first without repeats", async () => {
    const d = deps();
    const admin = await signUpAdmin(d);
    const made = [];
    for (let i = 0; i < 5; i++) made.push(await admin.caller.products.create({ name: `p${i}`, price: "1.00" }));
    const page1 = await admin.caller.audit.list({ action: "products.created", limit: 2 });
    const page2 = await admin.caller.audit.list({ action: "products.created", limit: 2, cursor: page1.nextCursor });
    const page3 = await admin.caller.audit.list({ action: "products.created", limit: 2, cursor: page2.nextCursor });
    expect([...page1.items, ...page2.items, ...page3.items].map((e) => e.targetId)).toEqual(made.map((p) => p.id).reverse());
    expect(page3.nextCursor).toBeNull();
    const one = await admin.caller.audit.list({ targetId: made[2]!.id });
    expect(one.items).toHaveLength(1);
    expect(one.items[0]).toMatchObject({
      action: "products.created",
      actorId: admin.user.id,
      targetType: "product",
      at: expect.stringMatching(/Z$/),
    });
    expect((await admin.caller.audit.list({ actorId: admin.user.id })).items.every((e) => e.actorId === admin.user.id)).toBe(true);
    expect((await admin.caller.audit.list({ actorId: "00000000-0000-4000-8000-000000000000" })).items).toEqual([]);
  });
});

describe("audit pruning (prune-sessions job)", () => {
  test("events older than AUDIT_RETENTION_DAYS are deleted, newer ones kept", async () => {
    const now = new Date("2026-11-24T12:00:00.000Z");
    const d = createTestDeps(handle.db, { clock: createTestClock(now), env: { AUDIT_RETENTION_DAYS: 30 } as never });
    const at = (days: number) => toDbTime(new Date(now.getTime() - days * 86_400_000));
    await handle.db.insert(auditEvents).values([
      { at: at(31), action: "auth.login" },
      { at: at(45), action: "auth.login" },
      { at: at(29), action: "auth.login" },
      { at: at(0), action: "auth.login" },
    ]);
    const report = await runPruneSessions({ ...d, handle }, 1);
    expect(report.auditEventsDeleted).toBe(2);
    expect((await eventsOf()).map((e) => new Date(`${e.at.replace(" ", "T")}Z`).getTime()).sort()).toEqual(
      [29, 0].map((days) => now.getTime() - days * 86_400_000).sort(),
    );
  });
});
