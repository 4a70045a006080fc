import { beforeEach, describe, expect, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import { createApp } from "../../src/app";
import { queryRows } from "../../src/db/client";
import { type OrderStatus, orderIdempotencyKeys, orderItems, orderStatuses, orders, products } from "../../src/db/schema";
import { DomainError } from "../../src/errors";
import { ORDER_TRANSITIONS } from "../../src/services/order-status";
import { callerFor, createTestDeps, errorCodeOf, insertProducts, signUp, signUpAdmin, stocksOf } from "../support/app";
import { getTestDatabase, resetDatabase } from "../support/db";

const handle = await getTestDatabase();
const db = handle.db;
beforeEach(() => resetDatabase(handle));
// Each test signs up users (argon2) on a shared 2-core machine: allow for load, assert no timings.
const TIMEOUT_MS = 30_000;

const createProducts = (...specs: { price: string; stock: number }[]) => insertProducts(db, specs, "product");

const stocksOfProducts = (ids: string[]) => stocksOf(db, ids);

async function countOrders(): Promise<number> {
  const [row] = await queryRows<{ n: number }>(db, sql`select count(*)::int as n from orders`);
  return row.n;
}

/** The DomainError behind a rejected call, to read its details (productIds). */
async function domainErrorOf(promise: Promise<unknown>): Promise<DomainError> {
  try {
    await promise;
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause;
    if (cause instanceof DomainError) return cause;
    throw error;
  }
  throw new Error("expected the call to fail");
}

async function setup() {
  const deps = createTestDeps(db);
  const alice = await signUp(deps);
  const bob = await signUp(deps);
  const admin = await signUpAdmin(deps);
  return { deps, alice, bob, admin };
}

describe("orders: happy path", () => {
  test(
    "create takes prices from the database, merges repeated products, decrements stock",
    async () => {
      const { alice } = await setup();
      const [cheap, dear] = await createProducts({ price: "0.10", stock: 10 }, { price: "19.99", stock: 5 });
      const order = await alice.caller.orders.create({
        items: [
          { productId: dear.id, quantity: 1 },
          { productId: cheap.id, quantity: 2 },
          { productId: cheap.id, quantity: 1 },
        ],
      });
      expect(order.status).toBe("pending");
      expect(order.userId).toBe(alice.user.id);
      // 3 × 0.10 + 1 × 19.99, exactly: no float ever touched it.
      expect(order.total).toBe("20.29");
      expect(order.items.map((i) => [i.productId, i.quantity, i.price]).sort()).toEqual(
        [
          [cheap.id, 3, "0.10"],
          [dear.id, 1, "19.99"],
        ].sort(),
      );
      expect(order.createdAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      expect(order.updatedAt).toBe(order.createdAt);
      expect(await stocksOfProducts([cheap.id, dear.id])).toEqual({ [cheap.id]: 7, [dear.id]: 4 });
      // What create returned is what byId and list return.
      expect(await alice.caller.orders.byId({ id: order.id })).toEqual(order);
      expect((await alice.caller.orders.list()).items).toEqual([order]);
    },
    TIMEOUT_MS,
  );

  test(
    "each line keeps the price it was sold at when the product price changes later",
    async () => {
      const { alice } = await setup();
      const [p] = await createProducts({ price: "5.00", stock: 10 });
      const first = await alice.caller.orders.create({ items: [{ productId: p.id, quantity: 2 }] });
      await db.update(products).set({ price: "7.50" }).where(eq(products.id, p.id));
      const second = await alice.caller.orders.create({ items: [{ productId: p.id, quantity: 2 }] });
      expect([first.total, first.items[0].price]).toEqual(["10.00", "5.00"]);
      expect([second.total, second.items[0].price]).toEqual(["15.00", "7.50"]);
      expect((await alice.caller.orders.byId({ id: first.id })).total).toBe("10.00");
    },
    TIMEOUT_MS,
  );

  test(
    "a total of exactly 99999999.99 fits",
    async () => {
      const { alice } = await setup();
      const [p] = await createProducts({ price: "99999999.99", stock: 1 });
      const order = await alice.caller.orders.create({ items: [{ productId: p.id, quantity: 1 }] });
      expect(order.total).toBe("99999999.99");
    },
    TIMEOUT_MS,
  );

  test(
    "list pages newest first with an opaque cursor, each order once, items included",
    async () => {
      const { alice, bob } = await setup();
      const [p] = await createProducts({ price: "1.00", stock: 1000 });
      const created: string[] = [];
      for (let i = 1; i <= 7; i++) {
        created.push((await alice.caller.orders.create({ items: [{ productId: p.id, quantity: i }] })).id);
        await bob.caller.orders.create({ items: [{ productId: p.id, quantity: 1 }] });
      }
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page: Awaited<ReturnType<typeof alice.caller.orders.list>> = await alice.caller.orders.list({ limit: 3, cursor });
        pages++;
        for (const o of page.items) {
          expect(o.userId).toBe(alice.user.id);
          expect(o.items).toHaveLength(1);
          expect(o.total).toBe(`${o.items[0].quantity}.00`);
        }
        seen.push(...page.items.map((o) => o.id));
        cursor = page.nextCursor;
      } while (cursor);
      expect(pages).toBe(3);
      expect(seen).toEqual([...created].reverse());
      // Ties on created_at (one transaction, or a coarse clock) are broken by id.
      await db.update(orders).set({ createdAt: "2026-01-01 00:00:00" });
      const all: string[] = [];
      cursor = null;
      do {
        const page: Awaited<ReturnType<typeof alice.caller.orders.list>> = await alice.caller.orders.list({ limit: 2, cursor });
        all.push(...page.items.map((o) => o.id));
        cursor = page.nextCursor;
      } while (cursor);
      expect(all).toEqual([...created].sort().reverse());
    },
    TIMEOUT_MS,
  );

  test(
    "list filters by status; an admin sees everyone's and may filter by userId",
    async () => {
      const { alice, bob, admin } = await setup();
      const [p] = await createProducts({ price: "2.50", stock: 100 });
      const a1 = await alice.caller.orders.create({ items: [{ productId: p.id, quantity: 1 }] });
      const a2 = await alice.caller.orders.create({ items: [{ productId: p.id, quantity: 1 }] });
      const b1 = await bob.caller.orders.create({ items: [{ productId: p.id, quantity: 1 }] });
      await alice.caller.orders.cancel({ id: a1.id });
      expect((await alice.caller.orders.list({ status: "cancelled" })).items.map((o) => o.id)).toEqual([a1.id]);
      expect((await alice.caller.orders.list({ status: "pending" })).items.map((o) => o.id)).toEqual([a2.id]);
      expect((await admin.caller.orders.list()).items.map((o) => o.id)).toEqual([b1.id, a2.id, a1.id]);
      expect((await admin.caller.orders.list({ userId: bob.user.id })).items.map((o) => o.id)).toEqual([b1.id]);
      expect((await admin.caller.orders.list({ userId: alice.user.id, status: "pending" })).items.map((o) => o.id)).toEqual([a2.id]);
      expect(await admin.caller.orders.byId({ id: b1.id })).toEqual(b1);
    },
    TIMEOUT_MS,
  );

  test(
    "cancel restores every line's stock and moves updated_at",
    async () => {
      const { alice } = await setup();
      const [p, q] = await createProducts({ price: "1.00", stock: 10 }, { price: "2.00", stock: 10 });
      const order = await alice.caller.orders.create({
        items: [
          { productId: p.id, quantity: 4 },
          { productId: q.id, quantity: 6 },
        ],
      });
      expect(await stocksOfProducts([p.id, q.id])).toEqual({ [p.id]: 6, [q.id]: 4 });
      await db.update(orders).set({ updatedAt: "2020-01-01 00:00:00" }).where(eq(orders.id, order.id));
      const cancelled = await alice.caller.orders.cancel({ id: order.id });
      expect(cancelled.status).toBe("cancelled");
      expect(cancelled.items).toEqual(order.items);
      expect(cancelled.updatedAt > "2020-01-02").toBe(true);
      expect(await stocksOfProducts([p.id, q.id])).toEqual({ [p.id]: 10, [q.id]: 10 });
    },
    TIMEOUT_MS,
  );
});

describe("orders: idempotency", () => {
  test(
    "a retry with the same key and items returns the original order and changes nothing",
    async () => {
      const { alice } = await setup();
      const [p, q] = await createProducts({ price: "3.00", stock: 3 }, { price: "1.00", stock: 10 });
      const request = {
        items: [
          { productId: p.id, quantity: 3 },
          { productId: q.id, quantity: 1 },
        ],
        idempotencyKey: "checkout-1",
      };
      const first = await alice.caller.orders.create(request);
      // The first order took the last units of p: the retry must still get its order, not a CONFLICT.
      const retry = await alice.caller.orders.create({ ...request, items: [...request.items].reverse() });
      expect(retry).toEqual(first);
      expect(await stocksOfProducts([p.id, q.id])).toEqual({ [p.id]: 0, [q.id]: 9 });
      expect(await countOrders()).toBe(1);
    },
    TIMEOUT_MS,
  );

  test(
    "the same key with other items is a CONFLICT; keys are per user",
    async () => {
      const { alice, bob } = await setup();
      const [p] = await createProducts({ price: "3.00", stock: 10 });
      await alice.caller.orders.create({ items: [{ productId: p.id, quantity: 1 }], idempotencyKey: "k" });
      const error = await domainErrorOf(alice.caller.orders.create({ items: [{ productId: p.id, quantity: 2 }], idempotencyKey: "k" }));
      expect(error.kind).toBe("CONFLICT");
      expect(error.message).toContain("idempotencyKey");
      const bobs = await bob.caller.orders.create({ items: [{ productId: p.id, quantity: 2 }], idempotencyKey: "k" });
      expect(bobs.userId).toBe(bob.user.id);
      expect(await stocksOfProducts([p.id])).toEqual({ [p.id]: 7 });
    },
    TIMEOUT_MS,
  );

  test(
    "a request that failed does not use up its key",
    async () => {
      const { alice } = await setup();
      const [p] = await createProducts({ price: "3.00", stock: 1 });
      const request = { items: [{ productId: p.id, quantity: 2 }], idempotencyKey: "later" };
      expect(await errorCodeOf(alice.caller.orders.create(request))).toBe("CONFLICT");
      expect(await db.select().from(orderIdempotencyKeys)).toHaveLength(0);
      await db.update(products).set({ stock: 5 }).where(eq(products.id, p.id));
      const order = await alice.caller.orders.create(request);
      expect(await alice.caller.orders.create(request)).toEqual(order);
      expect(await stocksOfProducts([p.id])).toEqual({ [p.id]: 3 });
    },
    TIMEOUT_MS,
  );
});

describe("orders: errors", () => {
  test(
    "an unknown product is NOT_FOUND and nothing changes",
    async () => {
      const { alice } = await setup();
      const [p] = await createProducts({ price: "1.00", stock: 10 });
      const code = await errorCodeOf(
        alice.caller.orders.create({
          items: [
            { productId: p.id, quantity: 1 },
            { productId: "00000000-0000-4000-8000-000000000000", quantity: 1 },
          ],
        }),
      );
      expect(code).toBe("NOT_FOUND");
      expect(await stocksOfProducts([p.id])).toEqual({ [p.id]: 10 });
      expect(await countOrders()).toBe(0);
    },
    TIMEOUT_MS,
  );

  test(
    "short stock is CONFLICT listing every short product, and nothing changes",
    async () => {
      const { alice } = await setup();
      const [a, b, c] = await createProducts({ price: "1.00", stock: 1 }, { price: "1.00", stock: 10 }, { price: "1.00", stock: 0 });
      const error = await domainErrorOf(
        alice.caller.orders.create({
          items: [
            { productId: c.id, quantity: 1 },
            { productId: b.id, quantity: 10 },
            { productId: a.id, quantity: 1 },
            { productId: a.id, quantity: 1 },
          ],
        }),
      );
      expect(error.kind).toBe("CONFLICT");
      expect([...(error.details.productIds ?? [])].sort()).toEqual([a.id, c.id].sort());
      expect(await stocksOfProducts([a.id, b.id, c.id])).toEqual({ [a.id]: 1, [b.id]: 10, [c.id]: 0 });
      expect(await countOrders()).toBe(0);
    },
    TIMEOUT_MS,
  );

  test(
    "CONFLICT carries data.productIds on the wire",
    async () => {
      const { deps, alice } = await setup();
      const [a] = await createProducts({ price: "1.00", stock: 0 });
      const res = await createApp(deps).request("/trpc/orders.create", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${alice.accessToken}` },
        body: JSON.stringify({ items: [{ productId: a.id, quantity: 1 }] }),
      });
      expect(res.status).toBe(409);
      const body = (await res.json()) as { error: { data: { code: string; productIds: string[] } } };
      expect(body.error.data.code).toBe("CONFLICT");
      expect(body.error.data.productIds).toEqual([a.id]);
    },
    TIMEOUT_MS,
  );

  test(
    "a total above 99999999.99 is BAD_REQUEST and nothing changes",
    async () => {
      const { alice } = await setup();
      const [big, small] = await createProducts({ price: "99999999.99", stock: 5 }, { price: "0.01", stock: 5 });
      for (const items of [
        [{ productId: big.id, quantity: 2 }],
        [
          { productId: big.id, quantity: 1 },
          { productId: small.id, quantity: 1 },
        ],
      ]) {
        const error = await domainErrorOf(alice.caller.orders.create({ items }));
        expect(error.kind).toBe("BAD_REQUEST");
        expect(error.message).toContain("99999999.99");
      }
      expect(await stocksOfProducts([big.id, small.id])).toEqual({ [big.id]: 5, [small.id]: 5 });
      expect(await countOrders()).toBe(0);
    },
    TIMEOUT_MS,
  );

  test(
    "invalid input is BAD_REQUEST naming the field, never echoing the value",
    async () => {
      const { alice } = await setup();
      const [p] = await createProducts({ price: "1.00", stock: 10 });
      const cases: unknown[] = [
        { items: [] },
        { items: Array.from({ length: 101 }, () => ({ productId: p.id, quantity: 1 })) },
        { items: [{ productId: p.id, quantity: 0 }] },
        { items: [{ productId: p.id, quantity: 1001 }] },
        { items: [{ productId: p.id, quantity: 1.5 }] },
        { items: [{ productId: "not-a-uuid-secret", quantity: 1 }] },
        { items: [{ productId: p.id, quantity: 1 }], idempotencyKey: "" },
        { items: [{ productId: p.id, quantity: 1 }], idempotencyKey: "x".repeat(256) },
        { items: [{ productId: p.id, quantity: 1 }], idempotencyKey: "nul\u0000key" },
        { items: [{ productId: p.id, quantity: 1 }], idempotencyKey: 42 },
        { items: "all of them" },
        {},
      ];
      for (const input of cases) {
        try {
          await alice.caller.orders.create(input as never);
          throw new Error("expected BAD_REQUEST");
        } catch (error) {
          expect((error as { code?: string }).code).toBe("BAD_REQUEST");
        }
      }
      const res = await createApp(createTestDeps(db)).request("/trpc/orders.create", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${alice.accessToken}` },
        body: JSON.stringify({ items: [{ productId: "not-a-uuid-secret", quantity: 1 }] }),
      });
      const body = (await res.json()) as { error: { message: string } };
      expect(body.error.message).toContain("productId");
      expect(body.error.message).not.toContain("not-a-uuid-secret");
      expect(await errorCodeOf(alice.caller.orders.byId({ id: "nope" }))).toBe("BAD_REQUEST");
      expect(await errorCodeOf(alice.caller.orders.list({ status: "lost" as never }))).toBe("BAD_REQUEST");
      expect(await errorCodeOf(alice.caller.orders.list({ cursor: "bm90IGEgY3Vyc29y" }))).toBe("BAD_REQUEST");
      expect(await errorCodeOf(alice.caller.orders.byId({ id: "00000000-0000-4000-8000-000000000000" }))).toBe("NOT_FOUND");
      expect(await countOrders()).toBe(0);
    },
    TIMEOUT_MS,
  );
});

describe("orders: status machine", () => {
  const PATH: OrderStatus[] = ["pending", "processing", "shipped", "delivered"];

  /** An order placed by `customer` and moved by `admin` along legal moves until it is `status`. */
  async function orderIn(status: OrderStatus, ctx: Awaited<ReturnType<typeof setup>>, productId: string) {
    const order = await ctx.alice.caller.orders.create({ items: [{ productId, quantity: 1 }] });
    if (status === "cancelled") return ctx.admin.caller.orders.updateStatus({ id: order.id, status });
    let current = order;
    for (const next of PATH.slice(1, PATH.indexOf(status) + 1)) {
      current = await ctx.admin.caller.orders.updateStatus({ id: order.id, status: next });
    }
    return current;
  }

  test(
    "every legal move succeeds and every illegal one is CONFLICT, changing nothing",
    async () => {
      const ctx = await setup();
      const [p] = await createProducts({ price: "1.00", stock: 1000 });
      for (const from of orderStatuses) {
        for (const to of orderStatuses) {
          const order = await orderIn(from, ctx, p.id);
          expect(order.status).toBe(from);
          const stockBefore = (await stocksOfProducts([p.id]))[p.id];
          const legal = ORDER_TRANSITIONS[from].includes(to);
          const result = ctx.admin.caller.orders.updateStatus({ id: order.id, status: to });
          if (legal) {
            const moved = await result;
            expect(moved.status).toBe(to);
            expect(moved.updatedAt >= order.updatedAt).toBe(true);
            expect((await stocksOfProducts([p.id]))[p.id]).toBe(stockBefore + (to === "cancelled" ? 1 : 0));
          } else {
            expect(`${from}->${to}: ${await errorCodeOf(result)}`).toBe(`${from}->${to}: CONFLICT`);
            expect((await ctx.admin.caller.orders.byId({ id: order.id })).status).toBe(from);
            expect((await stocksOfProducts([p.id]))[p.id]).toBe(stockBefore);
          }
        }
      }
      // The table itself is the specification's.
      expect(ORDER_TRANSITIONS).toEqual({
        pending: ["processing", "cancelled"],
        processing: ["shipped", "cancelled"],
        shipped: ["delivered"],
        delivered: [],
        cancelled: [],
      });
    },
    TIMEOUT_MS,
  );

  test(
    "updated_at moves on every status change",
    async () => {
      const ctx = await setup();
      const [p] = await createProducts({ price: "1.00", stock: 10 });
      const order = await ctx.alice.caller.orders.create({ items: [{ productId: p.id, quantity: 1 }] });
      for (const next of PATH.slice(1)) {
        await db.update(orders).set({ updatedAt: "2020-01-01 00:00:00" }).where(eq(orders.id, order.id));
        const moved = await ctx.admin.caller.orders.updateStatus({ id: order.id, status: next });
        expect(moved.updatedAt > "2020-01-02").toBe(true);
        expect(moved.createdAt).toBe(order.createdAt);
      }
    },
    TIMEOUT_MS,
  );

  test(
    "a customer may cancel a processing order; an unknown order is NOT_FOUND",
    async () => {
      const ctx = await setup();
      const [p] = await createProducts({ price: "1.00", stock: 10 });
      const order = await orderIn("processing", ctx, p.id);
      expect((await ctx.alice.caller.orders.cancel({ id: order.id })).status).toBe("cancelled");
      expect((await stocksOfProducts([p.id]))[p.id]).toBe(10);
      const unknown = "00000000-0000-4000-8000-000000000000";
      expect(await errorCodeOf(ctx.alice.caller.orders.cancel({ id: unknown }))).toBe("NOT_FOUND");
      expect(await errorCodeOf(ctx.admin.caller.orders.updateStatus({ id: unknown, status: "shipped" }))).toBe("NOT_FOUND");
      expect(await errorCodeOf(ctx.admin.caller.orders.updateStatus({ id: unknown, status: "pending" }))).toBe("NOT_FOUND");
    },
    TIMEOUT_MS,
  );
});

describe("orders: security", () => {
  test(
    "a customer cannot see, list or cancel another customer's order, nor call updateStatus",
    async () => {
      const { alice, bob, admin } = await setup();
      const [p] = await createProducts({ price: "1.00", stock: 10 });
      const order = await alice.caller.orders.create({ items: [{ productId: p.id, quantity: 2 }] });
      expect(await errorCodeOf(bob.caller.orders.byId({ id: order.id }))).toBe("NOT_FOUND");
      expect((await bob.caller.orders.list()).items).toEqual([]);
      // A customer's userId filter is ignored: still only their own orders.
      expect((await bob.caller.orders.list({ userId: alice.user.id })).items).toEqual([]);
      expect(await errorCodeOf(bob.caller.orders.cancel({ id: order.id }))).toBe("NOT_FOUND");
      expect(await errorCodeOf(bob.caller.orders.updateStatus({ id: order.id, status: "processing" }))).toBe("FORBIDDEN");
      expect(await errorCodeOf(alice.caller.orders.updateStatus({ id: order.id, status: "cancelled" }))).toBe("FORBIDDEN");
      // Nothing moved.
      expect((await alice.caller.orders.byId({ id: order.id })).status).toBe("pending");
      expect((await stocksOfProducts([p.id]))[p.id]).toBe(8);
      // The admin may cancel anyone's order.
      expect((await admin.caller.orders.cancel({ id: order.id })).status).toBe("cancelled");
      // Another's cancelled order is still NOT_FOUND for bob, not CONFLICT (existence is not revealed).
      expect(await errorCodeOf(bob.caller.orders.cancel({ id: order.id }))).toBe("NOT_FOUND");
    },
    TIMEOUT_MS,
  );

  test(
    "signed-out callers get UNAUTHORIZED everywhere",
    async () => {
      const { deps } = await setup();
      const anon = callerFor(deps);
      const id = "00000000-0000-4000-8000-000000000000";
      expect(await errorCodeOf(anon.orders.create({ items: [{ productId: id, quantity: 1 }] }))).toBe("UNAUTHORIZED");
      expect(await errorCodeOf(anon.orders.list())).toBe("UNAUTHORIZED");
      expect(await errorCodeOf(anon.orders.byId({ id }))).toBe("UNAUTHORIZED");
      expect(await errorCodeOf(anon.orders.cancel({ id }))).toBe("UNAUTHORIZED");
      expect(await errorCodeOf(anon.orders.updateStatus({ id, status: "shipped" }))).toBe("UNAUTHORIZED");
    },
    TIMEOUT_MS,
  );

  test(
    "responses never carry numbers for money",
    async () => {
      const { alice } = await setup();
      const [p] = await createProducts({ price: "10.00", stock: 10 });
      const order = await alice.caller.orders.create({ items: [{ productId: p.id, quantity: 3 }] });
      expect(typeof order.total).toBe("string");
      expect(order.total).toBe("30.00");
      expect(typeof order.items[0].price).toBe("string");
      const rows = await db.select().from(orderItems).where(eq(orderItems.orderId, order.id));
      expect(rows.map((r) => r.price)).toEqual(["10.00"]);
    },
    TIMEOUT_MS,
  );
});
