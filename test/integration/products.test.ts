import { beforeEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { eq, sql } from "drizzle-orm";
import { queryRows } from "../../src/db/client";
import { orderItems, orders, products } from "../../src/db/schema";
import { buildListProductsQuery, encodeProductCursor, type ProductSort, productSorts } from "../../src/services/products";
import { callerFor, callHttp, createTestDeps, errorCodeOf, expectBadInputRefused, signUp, signUpAdmin } from "../support/app";
import { getTestDatabase, onPostgres, resetDatabase } from "../support/db";

const handle = await getTestDatabase();
const db = handle.db;
beforeEach(() => resetDatabase(handle));

const deps = () => createTestDeps(db);
const anonymous = () => callerFor(deps()).products;

// --- A seeded PRNG so a failing catalog can be replayed from the seed in the test name. ---
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T;
  return { next, pick };
}

interface ModelRow {
  id: string;
  name: string;
  price: string;
  stock: number;
  /** Fixed-width database text, so string order is time order. */
  createdAt: string;
}

const cents = (money: string) => {
  const [whole, fraction = ""] = money.split(".");
  return Number(whole) * 100 + Number(fraction.padEnd(2, "0"));
};

/** Postgres orders uuids bytewise, which is the order of their lower-case text. */
const byId = (a: ModelRow, b: ModelRow) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const cmp = (a: string | number, b: string | number) => (a < b ? -1 : a > b ? 1 : 0);

const COMPARATORS: Record<ProductSort, (a: ModelRow, b: ModelRow) => number> = {
  newest: (a, b) => cmp(b.createdAt, a.createdAt) || -byId(a, b),
  price_asc: (a, b) => cmp(cents(a.price), cents(b.price)) || byId(a, b),
  price_desc: (a, b) => cmp(cents(b.price), cents(a.price)) || -byId(a, b),
  // The test databases use the C collation (checked below), which orders like JS code units.
  name_asc: (a, b) => cmp(a.name, b.name) || byId(a, b),
};

interface Filters {
  search?: string;
  minPrice?: string;
  maxPrice?: string;
  inStock?: boolean;
}

function expected(model: ModelRow[], sort: ProductSort, f: Filters): string[] {
  return model
    .filter((p) => !f.search || p.name.toLowerCase().includes(f.search.toLowerCase()))
    .filter((p) => f.minPrice === undefined || cents(p.price) >= cents(f.minPrice))
    .filter((p) => f.maxPrice === undefined || cents(p.price) <= cents(f.maxPrice))
    .filter((p) => f.inStock === undefined || (f.inStock ? p.stock > 0 : p.stock === 0))
    .sort(COMPARATORS[sort])
    .map((p) => p.id);
}

/** Follows nextCursor to the end; checks each page's own contract on the way. */
async function walk(input: Filters & { sort: ProductSort; limit: number }, between?: () => Promise<void>) {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 10_000; pages++) {
    const page = await anonymous().list({ ...input, cursor });
    expect(page.items.length).toBeLessThanOrEqual(input.limit);
    if (page.nextCursor !== null) expect(page.items.length).toBe(input.limit);
    ids.push(...page.items.map((p) => p.id));
    if (page.nextCursor === null) return ids;
    cursor = page.nextCursor;
    if (between) await between();
  }
  throw new Error("paging did not end");
}

async function databaseUsesCCollation(): Promise<boolean> {
  const [row] = await queryRows<{ collate: string }>(
    db,
    sql`select datcollate as collate from pg_database where datname = current_database()`,
  );
  return ["C", "C.UTF-8", "C.utf8", "POSIX"].includes(row?.collate ?? "");
}

/** Inserts a catalog straight into the table (explicit ids and created_at, many ties). */
async function seedRandomCatalog(seed: number, size: number, alphabet: string[]): Promise<ModelRow[]> {
  const r = prng(seed);
  const prices = ["0.00", "0.50", "1.00", "9.99", "10.00", "10.00", "100.00", "99999999.99"];
  const stocks = [0, 0, 1, 3, 1_000_000_000];
  // Microsecond steps inside one millisecond: a cursor rounded to milliseconds would break here.
  const times = ["2026-01-01 00:00:00.000000", "2026-01-01 00:00:00.000001", "2026-01-01 00:00:00.000002", "2026-03-01 12:00:00.500000"];
  const model: ModelRow[] = Array.from({ length: size }, () => {
    const length = 1 + Math.floor(r.next() * 3);
    return {
      id: crypto.randomUUID(),
      name: Array.from({ length }, () => r.pick(alphabet)).join(""),
      price: r.pick(prices),
      stock: r.pick(stocks),
      createdAt: r.pick(times),
    };
  });
  await db.insert(products).values(model.map((m) => ({ ...m, updatedAt: m.createdAt })));
  return model;
}

describe("products: happy path", () => {
  test("create, byId, update, delete, with the Product shape and money normalised", async () => {
    const admin = await signUpAdmin(deps());
    const created = await admin.caller.products.create({ name: "  Linen Shirt ", description: "Light.", price: "49.9", stock: 7 });
    expect(Object.keys(created).sort()).toEqual(["createdAt", "description", "id", "name", "price", "stock", "updatedAt"]);
    expect(created).toMatchObject({ name: "Linen Shirt", description: "Light.", price: "49.90", stock: 7 });
    expect(created.createdAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(await anonymous().byId({ id: created.id })).toEqual(created);
    expect(await anonymous().byId({ id: created.id.toUpperCase() })).toEqual(created);

    const defaults = await admin.caller.products.create({ name: "No stock", price: "0" });
    expect(defaults).toMatchObject({ description: null, price: "0.00", stock: 0 });

    const renamed = await admin.caller.products.update({ id: created.id, name: "Linen Shirt II" });
    expect(renamed).toMatchObject({ name: "Linen Shirt II", description: "Light.", price: "49.90", stock: 7 });
    const repriced = await admin.caller.products.update({ id: created.id, price: "99999999.99", description: null });
    expect(repriced).toMatchObject({ name: "Linen Shirt II", description: null, price: "99999999.99", stock: 7 });
    expect(repriced.createdAt).toBe(created.createdAt);

    expect(await admin.caller.products.delete({ id: created.id })).toEqual({ ok: true });
    expect(await errorCodeOf(anonymous().byId({ id: created.id }))).toBe("NOT_FOUND");
  });

  test("updated_at moves on every change, to the microsecond", async () => {
    const admin = await signUpAdmin(deps());
    const { id } = await admin.caller.products.create({ name: "Clock", price: "1" });
    const stamps: string[] = [];
    const read = async () => {
      const [row] = await queryRows<{ updated_at: string }>(db, sql`select updated_at::text from products where id = ${id}`);
      stamps.push(row!.updated_at);
    };
    await read();
    for (const change of [{ name: "Clock 2" }, { price: "2" }, { description: "tick" }, { description: null }]) {
      await Bun.sleep(2); // PGlite's clock has millisecond resolution
      await admin.caller.products.update({ id, ...change });
      await read();
    }
    for (let i = 1; i < stamps.length; i++) expect(stamps[i]! > stamps[i - 1]!).toBe(true);
  });

  test("list: the input may be omitted; newest first by default; page shape", async () => {
    const admin = await signUpAdmin(deps());
    const a = await admin.caller.products.create({ name: "A", price: "1" });
    await Bun.sleep(2);
    const b = await admin.caller.products.create({ name: "B", price: "2" });
    const page = await anonymous().list();
    expect(page).toEqual({ items: [b, a], nextCursor: null });
    expect(await anonymous().list({})).toEqual(page);
    const http = await callHttp(deps(), "products.list", "query");
    expect(http.data).toEqual(page);
  });

  test("list: the default limit is 20", async () => {
    await db.insert(products).values(Array.from({ length: 25 }, (_, i) => ({ name: `p${i}`, price: "1.00" })));
    const page = await anonymous().list();
    expect(page.items).toHaveLength(20);
    expect(page.nextCursor).not.toBeNull();
  });

  test("search: case-insensitive substring; %, _ and \\ are literal", async () => {
    const names = ["50% off", "500 off", "snake_case", "snakeXcase", "back\\slash", "backslash", "Summer HAT", "hat"];
    const ids = new Map<string, string>();
    for (const name of names) {
      const [row] = await db.insert(products).values({ name, price: "1.00" }).returning({ id: products.id });
      ids.set(name, row!.id);
    }
    const found = async (search: string) =>
      (await anonymous().list({ search, sort: "name_asc", limit: 100 })).items.map((p) => p.name).sort();
    expect(await found("0%")).toEqual(["50% off"]);
    expect(await found("%")).toEqual(["50% off"]);
    expect(await found("e_c")).toEqual(["snake_case"]);
    expect(await found("_")).toEqual(["snake_case"]);
    expect(await found("\\")).toEqual(["back\\slash"]);
    expect(await found("k\\s")).toEqual(["back\\slash"]);
    expect(await found("hAt")).toEqual(["Summer HAT", "hat"]);
    expect(await found("")).toEqual([...names].sort());
    expect(await found("nothing like it")).toEqual([]);
  });

  test("price and stock filters are inclusive and exact on decimals", async () => {
    const rows = [
      { name: "a", price: "9.99", stock: 0 },
      { name: "b", price: "10.00", stock: 1 },
      { name: "c", price: "10.01", stock: 0 },
      { name: "d", price: "100.00", stock: 5 },
    ];
    await db.insert(products).values(rows);
    const names = async (input: Filters) => (await anonymous().list({ ...input, sort: "name_asc" })).items.map((p) => p.name);
    expect(await names({ minPrice: "10", maxPrice: "10.01" })).toEqual(["b", "c"]);
    expect(await names({ minPrice: "10.00" })).toEqual(["b", "c", "d"]);
    expect(await names({ maxPrice: "9.99" })).toEqual(["a"]);
    expect(await names({ inStock: true })).toEqual(["b", "d"]);
    expect(await names({ inStock: false })).toEqual(["a", "c"]);
    expect(await names({ minPrice: "100", maxPrice: "1" })).toEqual([]);
  });

  test("a name of 255 three-byte characters still pages by name (its cursor exceeds 1024 characters)", async () => {
    const admin = await signUpAdmin(deps());
    const long = "東".repeat(255);
    await admin.caller.products.create({ name: long, price: "1" });
    await admin.caller.products.create({ name: long, price: "2" });
    await admin.caller.products.create({ name: `${long.slice(0, -1)}京`, price: "3" });
    const first = await anonymous().list({ sort: "name_asc", limit: 1 });
    expect(first.nextCursor!.length).toBeGreaterThan(1024);
    const ids = await walk({ sort: "name_asc", limit: 1 });
    expect(new Set(ids).size).toBe(3);
  });
});

describe("products: paging property", () => {
  for (const seed of [1, 2, 3]) {
    test(`random catalog (seed ${seed}): for every sort and filter the pages are exactly the filtered sorted set`, async () => {
      const c = await databaseUsesCCollation();
      // Outside the C collation, punctuation and case order differently from JS: keep to lower case.
      const alphabet = c ? ["a", "b", "A", "%", "_", "\\"] : ["a", "b", "c"];
      const r = prng(seed * 7919);
      const model = await seedRandomCatalog(seed, 45, alphabet);
      const searches = c ? ["a", "A%", "_", "\\", "ab", "zz"] : ["a", "ab", "bc", "zz"];
      const moneyInputs = ["0", "0.5", "9.99", "10", "10.01", "100"];
      let combos = 0;
      for (const sort of productSorts) {
        for (const search of [undefined, r.pick(searches)]) {
          for (const minPrice of [undefined, r.pick(moneyInputs)]) {
            for (const maxPrice of [undefined, r.pick(moneyInputs)]) {
              for (const inStock of [undefined, true, false]) {
                const filters: Filters = { search, minPrice, maxPrice, inStock };
                const limit = r.pick([1, 2, 3, 7, 100]);
                const got = await walk({ ...filters, sort, limit });
                const want = expected(model, sort, filters);
                expect({ sort, limit, filters, ids: got }).toEqual({ sort, limit, filters, ids: want });
                expect(new Set(got).size).toBe(got.length);
                combos++;
              }
            }
          }
        }
      }
      expect(combos).toBe(4 * 2 * 2 * 2 * 3);
    }, 120_000);
  }

  test("products added while walking: every earlier product comes exactly once, in order", async () => {
    const model = await seedRandomCatalog(42, 30, ["a", "b", "c"]);
    const r = prng(4242);
    const prices = ["0.00", "1.00", "10.00", "50.00", "99999999.99"];
    for (const sort of productSorts) {
      const added: string[] = [];
      const ids = await walk({ sort, limit: 4 }, async () => {
        const rows = await db
          .insert(products)
          .values([0, 1].map(() => ({ name: r.pick(["a", "b", "c", "bb"]), price: r.pick(prices) })))
          .returning({ id: products.id });
        added.push(...rows.map((row) => row.id));
      });
      expect(new Set(ids).size).toBe(ids.length);
      const earlier = new Set(model.map((m) => m.id));
      expect(ids.filter((id) => earlier.has(id))).toEqual(expected(model, sort, {}));
      expect(ids.every((id) => earlier.has(id) || added.includes(id))).toBe(true);
      await db.delete(products).where(sql`${products.id} in ${added}`);
    }
  }, 60_000);
});

describe("products: errors", () => {
  test("unknown ids are NOT_FOUND", async () => {
    const admin = await signUpAdmin(deps());
    const id = crypto.randomUUID();
    expect(await errorCodeOf(anonymous().byId({ id }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(admin.caller.products.update({ id, name: "x" }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(admin.caller.products.delete({ id }))).toBe("NOT_FOUND");
  });

  test("an update with nothing to change is BAD_REQUEST; stock cannot be changed by update", async () => {
    const admin = await signUpAdmin(deps());
    const p = await admin.caller.products.create({ name: "Cap", price: "5", stock: 3 });
    expect(await errorCodeOf(admin.caller.products.update({ id: p.id }))).toBe("BAD_REQUEST");
    const res = await callHttp(deps(), "products.update", "mutation", { id: p.id, stock: 100 }, { token: admin.accessToken });
    expect(res.error?.code).toBe("BAD_REQUEST");
    expect(res.error?.message).toContain("stock");
    expect((await anonymous().byId({ id: p.id })).stock).toBe(3);
  });

  test("delete while an order item references the product is CONFLICT and deletes nothing", async () => {
    const admin = await signUpAdmin(deps());
    const customer = await signUp(deps());
    const p = await admin.caller.products.create({ name: "Ordered", price: "5", stock: 3 });
    const [order] = await db
      .insert(orders)
      .values({ userId: customer.user.id, status: "delivered", total: "5.00" })
      .returning({ id: orders.id });
    await db.insert(orderItems).values({ orderId: order!.id, productId: p.id, quantity: 1, price: "5.00" });

    const res = await callHttp(deps(), "products.delete", "mutation", { id: p.id }, { token: admin.accessToken });
    expect(res.error?.code).toBe("CONFLICT");
    expect(res.error?.message).not.toMatch(/foreign key|order_items_|violates|constraint/i);
    expect(await anonymous().byId({ id: p.id })).toEqual(p);
    expect(await db.select().from(orderItems).where(eq(orderItems.productId, p.id))).toHaveLength(1);

    await db.delete(orders).where(eq(orders.id, order!.id));
    expect(await admin.caller.products.delete({ id: p.id })).toEqual({ ok: true });
    expect(await errorCodeOf(admin.caller.products.delete({ id: p.id }))).toBe("NOT_FOUND");
  });

  test("a cursor from another sort, or a tampered one, is BAD_REQUEST", async () => {
    await db.insert(products).values(Array.from({ length: 5 }, (_, i) => ({ name: `p${i}`, price: `${i}.00` })));
    for (const issued of productSorts) {
      const { nextCursor } = await anonymous().list({ sort: issued, limit: 2 });
      expect(nextCursor).not.toBeNull();
      for (const used of productSorts) {
        const code = await errorCodeOf(anonymous().list({ sort: used, limit: 2, cursor: nextCursor }));
        expect(code).toBe(used === issued ? "no error" : "BAD_REQUEST");
      }
      expect(await errorCodeOf(anonymous().list({ sort: issued, cursor: `x${nextCursor}` }))).toBe("BAD_REQUEST");
      expect(await errorCodeOf(anonymous().list({ sort: issued, cursor: nextCursor!.slice(3) }))).toBe("BAD_REQUEST");
    }
  });

  test("a cursor for a deleted product still continues after its position", async () => {
    const rows = await db
      .insert(products)
      .values(Array.from({ length: 6 }, (_, i) => ({ name: `p${i}`, price: `${i}.00` })))
      .returning();
    const first = await anonymous().list({ sort: "price_asc", limit: 3 });
    await db.delete(products).where(eq(products.id, first.items[2]!.id));
    const second = await anonymous().list({ sort: "price_asc", limit: 3, cursor: first.nextCursor });
    expect(second.items.map((p) => p.price)).toEqual(["3.00", "4.00", "5.00"]);
    expect(rows).toHaveLength(6);
  });
});

describe("products: security", () => {
  const procedures = ["create", "update", "delete"] as const;

  test("anonymous callers get UNAUTHORIZED and customers FORBIDDEN on every admin procedure; nothing changes", async () => {
    const admin = await signUpAdmin(deps());
    const customer = await signUp(deps());
    const p = await admin.caller.products.create({ name: "Guarded", price: "5" });
    const inputs = {
      create: { name: "Sneaky", price: "1" },
      update: { id: p.id, price: "0" },
      delete: { id: p.id },
    };
    for (const procedure of procedures) {
      const call = (caller: ReturnType<typeof callerFor>) =>
        (caller.products[procedure] as (input: unknown) => Promise<unknown>)(inputs[procedure]);
      expect(await errorCodeOf(call(callerFor(deps())))).toBe("UNAUTHORIZED");
      expect(await errorCodeOf(call(callerFor(deps(), { token: "not-a-token" })))).toBe("UNAUTHORIZED");
      expect(await errorCodeOf(call(customer.caller))).toBe("FORBIDDEN");
      const http = await callHttp(deps(), `products.${procedure}`, "mutation", inputs[procedure], { token: customer.accessToken });
      expect(http.status).toBe(403);
    }
    expect(await anonymous().byId({ id: p.id })).toEqual(p);
    expect((await anonymous().list()).items).toHaveLength(1);
  });

  test("a search made of SQL stays a literal search", async () => {
    await db.insert(products).values({ name: "Plain", price: "1.00" });
    for (const search of ["' or 1=1 --", "%' or '1'='1", "\\'; drop table products; --"]) {
      expect((await anonymous().list({ search })).items).toEqual([]);
    }
    expect((await anonymous().list()).items).toHaveLength(1);
  });
});

describe("products: bad input is BAD_REQUEST, never 500, and never echoed", () => {
  const uuid = "6f1c2a4e-8b3d-4c5e-9f60-7a8b9c0d1e2f";
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const cases: Array<[string, "query" | "mutation", unknown]> = [
    ["products.list", "query", "not an object"],
    ["products.list", "query", { limit: "15" }],
    ["products.list", "query", { limit: 0 }],
    ["products.list", "query", { limit: 101 }],
    ["products.list", "query", { limit: 2.5 }],
    ["products.list", "query", { cursor: "garbage-cursor!!" }],
    ["products.list", "query", { cursor: 12345 }],
    ["products.list", "query", { cursor: "Q".repeat(5000) }],
    ["products.list", "query", { cursor: b64(["newest", "2026-13-45 00:00:00", uuid]) }],
    ["products.list", "query", { cursor: b64(["price_asc", "1e5", uuid]), sort: "price_asc" }],
    ["products.list", "query", { search: "needle".repeat(17) }],
    ["products.list", "query", { search: 42 }],
    ["products.list", "query", { search: "nul\u0000byte" }],
    ["products.list", "query", { minPrice: "1e5" }],
    ["products.list", "query", { minPrice: "-1" }],
    ["products.list", "query", { maxPrice: "0.001" }],
    ["products.list", "query", { maxPrice: "NaN" }],
    ["products.list", "query", { minPrice: 10 }],
    ["products.list", "query", { maxPrice: "100000000" }],
    ["products.list", "query", { inStock: "yes" }],
    ["products.list", "query", { sort: "cheapest" }],
    ["products.byId", "query", { id: "not-a-uuid" }],
    ["products.byId", "query", { id: 7 }],
    ["products.byId", "query", { id: "' or 1=1 --" }],
    ["products.byId", "query", {}],
    ["products.byId", "query", undefined],
    ["products.create", "mutation", { name: "Shirt", price: 19.99 }],
    ["products.create", "mutation", { name: "Shirt", price: "1e5" }],
    ["products.create", "mutation", { name: "Shirt", price: "-1" }],
    ["products.create", "mutation", { name: "Shirt", price: "0.001" }],
    ["products.create", "mutation", { name: "Shirt", price: "NaN" }],
    ["products.create", "mutation", { name: "Shirt", price: "123456789" }],
    ["products.create", "mutation", { name: "Shirt" }],
    ["products.create", "mutation", { name: "", price: "1" }],
    ["products.create", "mutation", { name: "   ", price: "1" }],
    ["products.create", "mutation", { name: "overlong".repeat(32), price: "1" }],
    ["products.create", "mutation", { name: 12, price: "1" }],
    ["products.create", "mutation", { name: "bad\u0000name", price: "1" }],
    ["products.create", "mutation", { name: "Shirt", price: "1", description: "verbose".repeat(1500) }],
    ["products.create", "mutation", { name: "Shirt", price: "1", description: 5 }],
    ["products.create", "mutation", { name: "Shirt", price: "1", stock: -1 }],
    ["products.create", "mutation", { name: "Shirt", price: "1", stock: 1.5 }],
    ["products.create", "mutation", { name: "Shirt", price: "1", stock: "5" }],
    ["products.create", "mutation", { name: "Shirt", price: "1", stock: 1_000_000_001 }],
    ["products.create", "mutation", ["Shirt", "1"]],
    ["products.update", "mutation", { id: "nope", name: "x" }],
    ["products.update", "mutation", { id: uuid, price: "1e5" }],
    ["products.update", "mutation", { id: uuid, price: 3 }],
    ["products.update", "mutation", { id: uuid, name: "" }],
    ["products.update", "mutation", { id: uuid, stock: 5 }],
    ["products.delete", "mutation", { id: "12345678-1234-1234-1234-1234567890zz" }],
    ["products.delete", "mutation", { id: null }],
  ];

  test.each(cases.map(([p, k, input]) => [p, JSON.stringify(input)?.slice(0, 60) ?? "no input", k, input] as const))(
    "%s %s",
    async (procedure, _label, kind, input) => {
      const admin = await signUpAdmin(deps());
      const res = await callHttp(deps(), procedure, kind, input, { token: admin.accessToken });
      expectBadInputRefused(res, input);
      if (typeof input === "object" && input && !Array.isArray(input)) {
        // Decoded cursors are values too: they must not come back either.
        expect(res.error!.message).not.toContain("2026-13-45");
      }
      expect(res.error!.message).not.toMatch(/select|from "products"|stack/i);
    },
  );

  test("NaN and Infinity (possible through a server-side caller) are refused", async () => {
    const admin = await signUpAdmin(deps());
    expect(await errorCodeOf(anonymous().list({ limit: Number.NaN }))).toBe("BAD_REQUEST");
    expect(await errorCodeOf(anonymous().list({ limit: Infinity }))).toBe("BAD_REQUEST");
    const create = admin.caller.products.create as (input: unknown) => Promise<unknown>;
    expect(await errorCodeOf(create({ name: "x", price: Number.NaN }))).toBe("BAD_REQUEST");
    expect(await errorCodeOf(create({ name: "x", price: "1", stock: Number.NaN }))).toBe("BAD_REQUEST");
  });

  test("a body that is not JSON is refused without a 500", async () => {
    const admin = await signUpAdmin(deps());
    const res = await callHttp(deps(), "products.create", "mutation", undefined, {
      token: admin.accessToken,
      rawBody: '{"name":"x","price":NaN}',
    });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
  });
});

describe.if(onPostgres)("products: query plans at scale (real Postgres)", () => {
  interface PlanNode {
    "Node Type": string;
    "Index Name"?: string;
    Plans?: PlanNode[];
  }
  const flatten = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(flatten)];

  async function planOf(query: { toSQL(): { sql: string; params: unknown[] } }): Promise<PlanNode[]> {
    const { sql: text, params } = query.toSQL();
    const rows = (await handle.sql!.unsafe(`explain (format json) ${text}`, params as never[])) as unknown as Array<
      Record<string, unknown>
    >;
    const plan = Object.values(rows[0]!)[0] as unknown;
    const parsed = (typeof plan === "string" ? JSON.parse(plan) : plan) as Array<{ Plan: PlanNode }>;
    return flatten(parsed[0]!.Plan);
  }

  test("20k products: search uses the trigram index; newest pages use (created_at, id)", async () => {
    await db.execute(sql`
      insert into products (name, description, price, stock, created_at, updated_at)
      select 'product ' || md5(i::text), null, ((i % 10000) / 100.0 + 1)::numeric(10, 2), i % 50,
             (now() at time zone 'utc') - make_interval(secs => i), (now() at time zone 'utc')
      from generate_series(1, 20000) as i`);
    await db.execute(sql`analyze products`);

    const term = createHash("md5").update("12345").digest("hex").slice(3, 13);
    const search = await planOf(buildListProductsQuery(db, { limit: 20, sort: "newest", search: term }));
    expect(search.some((n) => n["Node Type"] === "Bitmap Index Scan" && n["Index Name"] === "idx_products_name_trgm")).toBe(true);
    expect(search.some((n) => n["Node Type"] === "Seq Scan")).toBe(false);
    // And the query finds the one row it should.
    const found = await anonymous().list({ search: term.toUpperCase() });
    expect(found.items.map((p) => p.name)).toEqual([`product ${createHash("md5").update("12345").digest("hex")}`]);

    const first = await planOf(buildListProductsQuery(db, { limit: 20, sort: "newest" }));
    expect(first.some((n) => n["Index Name"] === "idx_products_created_at_id")).toBe(true);
    expect(first.some((n) => n["Node Type"] === "Seq Scan" || n["Node Type"] === "Sort")).toBe(false);

    // A later page (by a real cursor) seeks into the same index instead of scanning from the top.
    let cursor: string | null = null;
    for (let i = 0; i < 5; i++) cursor = (await anonymous().list({ limit: 100, cursor })).nextCursor;
    const later = await planOf(buildListProductsQuery(db, { limit: 20, sort: "newest", cursor }));
    expect(later.some((n) => n["Index Name"] === "idx_products_created_at_id")).toBe(true);
    expect(later.some((n) => n["Node Type"] === "Seq Scan" || n["Node Type"] === "Sort")).toBe(false);

    const byPrice = await planOf(
      buildListProductsQuery(db, {
        limit: 20,
        sort: "price_asc",
        cursor: encodeProductCursor("price_asc", { id: crypto.randomUUID(), price: "50.00", name: "", createdAt: "" }),
      }),
    );
    expect(byPrice.some((n) => n["Index Name"] === "idx_products_price")).toBe(true);
    expect(byPrice.some((n) => n["Node Type"] === "Seq Scan")).toBe(false);
  }, 120_000);
});
