// Races on real Postgres through PgBouncer: PGlite has one connection, so nothing there can race.
import { beforeEach, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { queryRows } from "../../src/db/client";
import type { DomainError } from "../../src/errors";
import { createTestDeps, insertProducts, signUp, signUpAdmin, stocksOf } from "../support/app";
import { getTestDatabase, onPostgres, resetDatabase } from "../support/db";

const handle = await getTestDatabase();
const db = handle.db;
// Generous: these assert outcomes, not speed, and share 2 cores with everything else.
const RACE_TIMEOUT_MS = 60_000;

type Outcome<T> = { ok: true; value: T } | { ok: false; code: string; error: unknown };

async function settle<T>(promise: Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, code: (error as { code?: string }).code ?? "not a tRPC error", error };
  }
}

const createProducts = (...specs: { price: string; stock: number }[]) => insertProducts(db, specs, "race product");

const stocksOfProducts = (ids: string[]) => stocksOf(db, ids);

async function countOrders(): Promise<number> {
  const [row] = await queryRows<{ n: number }>(db, sql`select count(*)::int as n from orders`);
  return row.n;
}

/** A small seeded generator, so a failing mix can be replayed. */
function seededRandom(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function customers(n: number) {
  const deps = createTestDeps(db);
  const list = [];
  for (let i = 0; i < n; i++) list.push(await signUp(deps));
  return { deps, list, admin: await signUpAdmin(deps) };
}

describe.if(onPostgres)("orders under concurrency (Postgres)", () => {
  beforeEach(() => resetDatabase(handle));

  test(
    "200 concurrent orders of 1 on stock 50: exactly 50 succeed, 150 CONFLICT, stock 0",
    async () => {
      const { list } = await customers(4);
      const [p] = await createProducts({ price: "4.99", stock: 50 });
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          settle(list[i % list.length].caller.orders.create({ items: [{ productId: p.id, quantity: 1 }] })),
        ),
      );
      const ok = results.filter((r) => r.ok);
      const failed = results.filter((r): r is Extract<Outcome<unknown>, { ok: false }> => !r.ok);
      expect(ok).toHaveLength(50);
      expect(failed.map((r) => r.code)).toEqual(Array(150).fill("CONFLICT"));
      for (const f of failed) expect((f.error as { cause?: DomainError }).cause?.details.productIds ?? []).toEqual([p.id]);
      expect(await stocksOfProducts([p.id])).toEqual({ [p.id]: 0 });
      expect(await countOrders()).toBe(50);
      const [sold] = await queryRows<{ n: number }>(db, sql`select coalesce(sum(quantity), 0)::int as n from order_items`);
      expect(sold.n).toBe(50);
    },
    RACE_TIMEOUT_MS,
  );

  // The order statement's snapshot is taken before it waits for the row lock; a stock increase
  // committed while it waits is what it must sell from. Computing the new stock from the
  // snapshot's row (1 - 3) instead of the locked one (6 - 3) trips the stock CHECK and refuses
  // an order the stock covers.
  test(
    "an order that waited on a stock increase sells from the increased stock",
    async () => {
      const { list } = await customers(1);
      const [p] = await createProducts({ price: "2.50", stock: 1 });
      let locked!: () => void;
      let release!: () => void;
      const rowLocked = new Promise<void>((resolve) => (locked = resolve));
      const released = new Promise<void>((resolve) => (release = resolve));
      const increase = db.transaction(async (tx) => {
        await tx.execute(sql`update products set stock = stock + 5 where id = ${p.id}`);
        locked();
        await released;
      });
      await rowLocked;
      const order = settle(list[0].caller.orders.create({ items: [{ productId: p.id, quantity: 3 }] }));
      // Wait until the order is blocked on the row lock, i.e. its snapshot predates the increase
      // (whichever of its statements waits: the guarded decrement, or the locked re-check after
      // the decrement skipped the row that was short in its snapshot).
      try {
        for (let i = 0; ; i++) {
          const [waiting] = await queryRows<{ n: number }>(
            db,
            sql`select count(*)::int as n from pg_stat_activity
               where wait_event_type = 'Lock' and datname = current_database() and pid <> pg_backend_pid()`,
          );
          if (waiting.n > 0) break;
          if (i > 200) throw new Error("the order never waited for the row lock");
          await new Promise((r) => setTimeout(r, 25));
        }
      } finally {
        release();
      }
      await increase;
      const outcome = await order;
      expect(outcome.ok ? "placed" : outcome.code).toBe("placed");
      expect(await stocksOfProducts([p.id])).toEqual({ [p.id]: 3 });
    },
    RACE_TIMEOUT_MS,
  );

  test(
    "multi-line orders with lines in opposite orders do not deadlock",
    async () => {
      const { list } = await customers(4);
      const [a, b, c] = await createProducts(
        { price: "1.00", stock: 10_000 },
        { price: "2.00", stock: 10_000 },
        { price: "3.00", stock: 10_000 },
      );
      const orders = [
        [a, b, c],
        [c, b, a],
        [b, a, c],
        [c, a, b],
      ];
      const results = await Promise.all(
        Array.from({ length: 120 }, (_, i) =>
          settle(
            list[i % list.length].caller.orders.create({
              items: orders[i % orders.length].map((p) => ({ productId: p.id, quantity: 1 })),
            }),
          ),
        ),
      );
      expect(results.filter((r) => !r.ok).map((r) => (r as { code: string }).code)).toEqual([]);
      expect(await stocksOfProducts([a.id, b.id, c.id])).toEqual({ [a.id]: 9880, [b.id]: 9880, [c.id]: 9880 });
    },
    RACE_TIMEOUT_MS,
  );

  test(
    "random mix of orders, cancels, status moves and stock adjustments keeps stock exact",
    async () => {
      const random = seededRandom(20261125);
      const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)];
      const { list, admin } = await customers(4);
      const initial = 40;
      const catalog = await createProducts(...Array.from({ length: 6 }, (_, i) => ({ price: `${i + 1}.25`, stock: initial })));
      const adjusted = new Map<string, number>(catalog.map((p) => [p.id, 0]));
      const errors: string[] = [];
      let placed = 0;
      let cancelled = 0;

      const orderTask = async () => {
        const customer = pick(list);
        const lines = Array.from({ length: 1 + Math.floor(random() * 4) }, () => ({
          productId: pick(catalog).id,
          quantity: 1 + Math.floor(random() * 4),
        }));
        const created = await settle(customer.caller.orders.create({ items: lines }));
        if (!created.ok) {
          errors.push(`create:${created.code}`);
          return;
        }
        placed++;
        const id = created.value.id;
        const next = random();
        let moves: Promise<unknown>[] = [];
        if (next < 0.2) moves = [customer.caller.orders.cancel({ id })];
        else if (next < 0.35) moves = [admin.caller.orders.updateStatus({ id, status: "cancelled" })];
        else if (next < 0.5) {
          await admin.caller.orders.updateStatus({ id, status: "processing" });
          // Two racing cancels and a racing ship: exactly one of them may win.
          moves = [
            customer.caller.orders.cancel({ id }),
            admin.caller.orders.cancel({ id }),
            admin.caller.orders.updateStatus({ id, status: "shipped" }),
          ];
        }
        const outcomes = await Promise.all(moves.map(settle));
        const wins = outcomes.filter((o) => o.ok) as { ok: true; value: { status: string } }[];
        for (const o of outcomes) if (!o.ok) errors.push(`move:${o.code}`);
        if (moves.length > 0) expect(wins).toHaveLength(1);
        if (wins[0]?.value.status === "cancelled") cancelled++;
      };

      const adjustTask = async () => {
        const product = pick(catalog);
        const delta = (random() < 0.5 ? -1 : 1) * (1 + Math.floor(random() * 8));
        // An admin adjustment through the API; refused (CONFLICT) when it would go below 0.
        const result = await settle(admin.caller.inventory.adjust({ productId: product.id, delta }));
        if (result.ok) adjusted.set(product.id, (adjusted.get(product.id) ?? 0) + delta);
        else errors.push(`adjust:${result.code}`);
      };

      await Promise.all(Array.from({ length: 180 }, () => (random() < 0.7 ? orderTask() : adjustTask())));

      // Only expected refusals: short stock on create, lost races on moves. Never a 500 or a deadlock.
      expect([...new Set(errors)].filter((e) => !e.endsWith(":CONFLICT"))).toEqual([]);
      // The mix really contended: some orders were refused and some went through.
      expect(errors.filter((e) => e.startsWith("create:")).length).toBeGreaterThan(0);
      expect(placed).toBeGreaterThan(0);
      expect(cancelled).toBeGreaterThan(0);
      expect(await countOrders()).toBe(placed);
      const [cancelledRows] = await queryRows<{ n: number }>(db, sql`select count(*)::int as n from orders where status = 'cancelled'`);
      expect(cancelledRows.n).toBe(cancelled);

      const sold = await queryRows<{ product_id: string; quantity: number }>(
        db,
        sql`select oi.product_id, sum(oi.quantity)::int as quantity
            from order_items oi join orders o on o.id = oi.order_id
           where o.status <> 'cancelled' group by oi.product_id`,
      );
      const soldOf = new Map(sold.map((r) => [r.product_id, r.quantity]));
      const stocks = await stocksOfProducts(catalog.map((p) => p.id));
      for (const p of catalog) {
        expect(stocks[p.id]).toBeGreaterThanOrEqual(0);
        expect({ id: p.id, stock: stocks[p.id] }).toEqual({
          id: p.id,
          stock: initial + (adjusted.get(p.id) ?? 0) - (soldOf.get(p.id) ?? 0),
        });
      }
    },
    RACE_TIMEOUT_MS,
  );

  test(
    "10 concurrent identical requests with one key: one order, stock decremented once, all get it",
    async () => {
      const { list } = await customers(1);
      const [alice] = list;
      // Stock for exactly one order: the retries must still get the order, not a stock CONFLICT.
      const [p, q] = await createProducts({ price: "1.50", stock: 2 }, { price: "0.75", stock: 100 });
      const request = {
        items: [
          { productId: p.id, quantity: 2 },
          { productId: q.id, quantity: 3 },
        ],
        idempotencyKey: "pay-once",
      };
      const results = await Promise.all(Array.from({ length: 10 }, () => settle(alice.caller.orders.create(request))));
      expect(results.filter((r) => !r.ok).map((r) => (r as { code: string }).code)).toEqual([]);
      const ids = new Set(results.map((r) => (r as { value: { id: string } }).value.id));
      expect(ids.size).toBe(1);
      expect(await countOrders()).toBe(1);
      expect(await stocksOfProducts([p.id, q.id])).toEqual({ [p.id]: 0, [q.id]: 97 });
    },
    RACE_TIMEOUT_MS,
  );

  test(
    "one key raced with two different item lists: one order; the other list gets CONFLICT",
    async () => {
      const { list } = await customers(1);
      const [alice] = list;
      const [p] = await createProducts({ price: "1.00", stock: 1000 });
      const requests = Array.from({ length: 10 }, (_, i) => ({
        items: [{ productId: p.id, quantity: i % 2 === 0 ? 1 : 2 }],
        idempotencyKey: "shared",
      }));
      const results = await Promise.all(requests.map((r) => settle(alice.caller.orders.create(r))));
      expect(await countOrders()).toBe(1);
      const winners = results.filter((r) => r.ok) as { ok: true; value: { id: string; items: { quantity: number }[] } }[];
      const winningQuantity = winners[0].value.items[0].quantity;
      results.forEach((r, i) => {
        const quantity = requests[i].items[0].quantity;
        if (quantity === winningQuantity) expect(r.ok).toBe(true);
        else expect(r.ok ? "ok" : r.code).toBe("CONFLICT");
      });
      expect(new Set(winners.map((w) => w.value.id)).size).toBe(1);
      expect(await stocksOfProducts([p.id])).toEqual({ [p.id]: 1000 - winningQuantity });
    },
    RACE_TIMEOUT_MS,
  );

  test(
    "20 concurrent cancels (owner and admin) restore stock exactly once",
    async () => {
      const { list, admin } = await customers(1);
      const [alice] = list;
      const [p, q] = await createProducts({ price: "1.00", stock: 10 }, { price: "2.00", stock: 10 });
      const order = await alice.caller.orders.create({
        items: [
          { productId: p.id, quantity: 3 },
          { productId: q.id, quantity: 7 },
        ],
      });
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          settle(
            i % 3 === 0
              ? admin.caller.orders.updateStatus({ id: order.id, status: "cancelled" })
              : i % 3 === 1
                ? admin.caller.orders.cancel({ id: order.id })
                : alice.caller.orders.cancel({ id: order.id }),
          ),
        ),
      );
      expect(results.filter((r) => r.ok)).toHaveLength(1);
      expect(results.filter((r) => !r.ok).map((r) => (r as { code: string }).code)).toEqual(Array(19).fill("CONFLICT"));
      expect(await stocksOfProducts([p.id, q.id])).toEqual({ [p.id]: 10, [q.id]: 10 });
    },
    RACE_TIMEOUT_MS,
  );

  test(
    "racing moves from one state: exactly one wins",
    async () => {
      const { list, admin } = await customers(1);
      const [alice] = list;
      const [p] = await createProducts({ price: "1.00", stock: 100 });
      const order = await alice.caller.orders.create({ items: [{ productId: p.id, quantity: 5 }] });
      const toProcessing = await Promise.all(
        Array.from({ length: 10 }, () => settle(admin.caller.orders.updateStatus({ id: order.id, status: "processing" }))),
      );
      expect(toProcessing.filter((r) => r.ok)).toHaveLength(1);
      const shipOrCancel = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          settle(
            i % 2 === 0
              ? admin.caller.orders.updateStatus({ id: order.id, status: "shipped" })
              : alice.caller.orders.cancel({ id: order.id }),
          ),
        ),
      );
      const wins = shipOrCancel.filter((r) => r.ok) as { ok: true; value: { status: string } }[];
      expect(wins).toHaveLength(1);
      expect(await stocksOfProducts([p.id])).toEqual({ [p.id]: wins[0].value.status === "cancelled" ? 100 : 95 });
    },
    RACE_TIMEOUT_MS,
  );
});
