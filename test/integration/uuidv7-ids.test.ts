import { beforeEach, describe, expect, test } from "bun:test";
import { asc, eq } from "drizzle-orm";
import { orderItems, orders, sessions } from "../../src/db/schema";
import { uuidv7Time } from "../../src/lib/uuidv7";
import { callerFor, createTestDeps, errorCodeOf, insertProducts, signUp } from "../support/app";
import { getTestDatabase, resetDatabase } from "../support/db";

// The ids the service makes for its busiest tables are time-ordered UUID v7 (src/lib/uuidv7.ts),
// so that inserts land at the growing edge of the primary keys (bench/results/2026-12-02-uuidv7.md).

const handle = await getTestDatabase();
const db = handle.db;
beforeEach(() => resetDatabase(handle));
const TIMEOUT_MS = 30_000;

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const isAscending = (ids: string[]) => ids.every((id, i) => i === 0 || ids[i - 1] < id);

describe("uuid v7 ids: happy path", () => {
  test(
    "orders and their items get v7 ids, ascending in creation order, in the API and in the table",
    async () => {
      const before = Date.now();
      const deps = createTestDeps(db);
      const alice = await signUp(deps);
      const products = await insertProducts(
        db,
        Array.from({ length: 3 }, () => ({ price: "1.00", stock: 100 })),
      );
      const created = [];
      for (let n = 0; n < 4; n++) {
        created.push(await alice.caller.orders.create({ items: products.map((p) => ({ productId: p.id, quantity: n + 1 })) }));
      }
      const after = Date.now();
      const orderIds = created.map((o) => o.id);
      for (const id of orderIds) expect(id).toMatch(V7);
      expect(isAscending(orderIds)).toBe(true);
      // The id carries the time it was made in (the process clock, not the database's).
      for (const id of orderIds) {
        expect(uuidv7Time(id)).toBeGreaterThanOrEqual(before);
        expect(uuidv7Time(id)).toBeLessThanOrEqual(after + 5);
      }
      // Postgres orders uuids bytewise: the table's key order is the creation order too.
      const stored = await db.select({ id: orders.id }).from(orders).orderBy(asc(orders.id));
      expect(stored.map((r) => r.id)).toEqual(orderIds);

      // Items: v7, and every item of a later order sorts after every item of an earlier one.
      const itemIds = created.flatMap((o) => o.items.map((i) => i.id).sort());
      for (const id of itemIds) expect(id).toMatch(V7);
      expect(isAscending(itemIds)).toBe(true);
      expect(new Set(itemIds).size).toBe(12);
      const storedItems = await db.select({ id: orderItems.id, orderId: orderItems.orderId }).from(orderItems).orderBy(asc(orderItems.id));
      expect(storedItems.map((r) => r.orderId)).toEqual(orderIds.flatMap((id) => [id, id, id]));
      // An item's id is made after its order's.
      for (const o of created) for (const i of o.items) expect(i.id > o.id).toBe(true);
    },
    TIMEOUT_MS,
  );

  test(
    "sessions from register and each login get v7 ids in creation order",
    async () => {
      const deps = createTestDeps(db);
      const first = await signUp(deps);
      const logins = [];
      for (let n = 0; n < 3; n++) logins.push(await callerFor(deps).auth.login({ email: first.user.email, password: first.password }));
      const rows = await db
        .select({ id: sessions.id, tokenHash: sessions.tokenHash })
        .from(sessions)
        .where(eq(sessions.userId, first.user.id))
        .orderBy(asc(sessions.id));
      expect(rows).toHaveLength(4);
      for (const r of rows) expect(r.id).toMatch(V7);
      // The session the API reports as current for each token is the one at its place in id order.
      const tokens = [first.accessToken, ...logins.map((l) => l.accessToken)];
      for (const [n, token] of tokens.entries()) {
        const current = (await callerFor(deps, { token }).auth.sessions()).find((s) => s.current)!;
        expect(current.id).toBe(rows[n].id);
      }
    },
    TIMEOUT_MS,
  );
});

describe("uuid v7 ids: error cases", () => {
  test(
    "a well-formed v7 id that names no order is NOT_FOUND, a malformed one BAD_REQUEST",
    async () => {
      const deps = createTestDeps(db);
      const alice = await signUp(deps);
      const [product] = await insertProducts(db, [{ price: "1.00", stock: 10 }]);
      const order = await alice.caller.orders.create({ items: [{ productId: product.id, quantity: 1 }] });
      // The next id in the same millisecond, as a guesser would try it.
      const neighbour = `${order.id.slice(0, 15)}${((Number.parseInt(order.id.slice(15, 18), 16) + 1) % 0x1000).toString(16).padStart(3, "0")}${order.id.slice(18)}`;
      expect(await errorCodeOf(alice.caller.orders.byId({ id: neighbour }))).toBe("NOT_FOUND");
      expect(await errorCodeOf(alice.caller.orders.byId({ id: order.id.slice(0, 35) }))).toBe("BAD_REQUEST");
    },
    TIMEOUT_MS,
  );
});

describe("uuid v7 ids: security", () => {
  test(
    "ids that sort by time are guessable in their prefix, so ownership still decides: another customer's order is NOT_FOUND",
    async () => {
      const deps = createTestDeps(db);
      const alice = await signUp(deps);
      const bob = await signUp(deps);
      const [product] = await insertProducts(db, [{ price: "1.00", stock: 10 }]);
      const mine = await alice.caller.orders.create({ items: [{ productId: product.id, quantity: 1 }] });
      const theirs = await bob.caller.orders.create({ items: [{ productId: product.id, quantity: 1 }] });
      expect(theirs.id > mine.id).toBe(true);
      expect(await errorCodeOf(alice.caller.orders.byId({ id: theirs.id }))).toBe("NOT_FOUND");
      expect(await errorCodeOf(alice.caller.orders.cancel({ id: theirs.id }))).toBe("NOT_FOUND");
    },
    TIMEOUT_MS,
  );
});
