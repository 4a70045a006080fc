import { beforeEach, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import { products } from "../../src/db/schema";
import { MAX_STOCK } from "../../src/services/inventory";
import { encodeProductCursor } from "../../src/services/products";
import { callerFor, callHttp, createTestDeps, errorCodeOf, expectBadInputRefused, signUp, signUpAdmin } from "../support/app";
import { getTestDatabase, onPostgres, resetDatabase } from "../support/db";

const handle = await getTestDatabase();
const db = handle.db;
beforeEach(() => resetDatabase(handle));

const deps = () => createTestDeps(db);
const anonymous = () => callerFor(deps()).inventory;

async function insertProduct(stock: number, name = "Widget"): Promise<string> {
  const [row] = await db.insert(products).values({ name, price: "1.00", stock }).returning({ id: products.id });
  return row!.id;
}
const stockOf = async (id: string) => (await db.select({ stock: products.stock }).from(products).where(eq(products.id, id)))[0]?.stock;
const updatedAtOf = async (id: string) =>
  (await db.select({ updatedAt: products.updatedAt }).from(products).where(eq(products.id, id)))[0]!.updatedAt;

describe("inventory: happy path", () => {
  test("get, adjust up and down, set", async () => {
    const admin = await signUpAdmin(deps());
    const id = await insertProduct(10);
    expect(await anonymous().get({ productId: id })).toEqual({ productId: id, stock: 10 });
    expect(await anonymous().get({ productId: id.toUpperCase() })).toEqual({ productId: id, stock: 10 });
    expect(await admin.caller.inventory.adjust({ productId: id, delta: 5 })).toEqual({ productId: id, stock: 15 });
    expect(await admin.caller.inventory.adjust({ productId: id, delta: -15 })).toEqual({ productId: id, stock: 0 });
    expect(await admin.caller.inventory.set({ productId: id, stock: 42 })).toEqual({ productId: id, stock: 42 });
    expect(await admin.caller.inventory.set({ productId: id, stock: 0 })).toEqual({ productId: id, stock: 0 });
    expect(await admin.caller.inventory.set({ productId: id, stock: MAX_STOCK })).toEqual({ productId: id, stock: MAX_STOCK });
    expect(await admin.caller.inventory.adjust({ productId: id, delta: -1_000_000 })).toEqual({
      productId: id,
      stock: MAX_STOCK - 1_000_000,
    });
    expect(await stockOf(id)).toBe(MAX_STOCK - 1_000_000);
  });

  test("stock changes move updated_at", async () => {
    const admin = await signUpAdmin(deps());
    const id = await insertProduct(10);
    const before = await updatedAtOf(id);
    await Bun.sleep(2);
    await admin.caller.inventory.adjust({ productId: id, delta: 1 });
    const afterAdjust = await updatedAtOf(id);
    expect(afterAdjust > before).toBe(true);
    await Bun.sleep(2);
    await admin.caller.inventory.set({ productId: id, stock: 3 });
    expect((await updatedAtOf(id)) > afterAdjust).toBe(true);
  });

  test("lowStock: stock ≤ threshold (default 5), lowest first, every item exactly once across pages", async () => {
    const admin = await signUpAdmin(deps());
    const stocks = [0, 0, 0, 1, 2, 2, 3, 5, 5, 5, 6, 7, 100, 0, 4, 5, 1_000_000_000];
    const rows = await Promise.all(stocks.map(async (stock, i) => ({ id: await insertProduct(stock, `item ${i}`), stock })));
    const expectedFor = (threshold: number) =>
      rows
        .filter((r) => r.stock <= threshold)
        .sort((a, b) => a.stock - b.stock || (a.id < b.id ? -1 : 1))
        .map((r) => r.id);

    const defaultPage = await admin.caller.inventory.lowStock();
    expect(defaultPage.items.map((i) => i.productId)).toEqual(expectedFor(5));
    expect(defaultPage.nextCursor).toBeNull();
    expect(Object.keys(defaultPage.items[0]!).sort()).toEqual(["name", "productId", "stock"]);

    for (const threshold of [0, 2, 5, 6, 100, MAX_STOCK]) {
      for (const limit of [1, 2, 3, 100]) {
        const seen: string[] = [];
        let cursor: string | null = null;
        do {
          const page: Awaited<ReturnType<typeof admin.caller.inventory.lowStock>> = await admin.caller.inventory.lowStock({
            threshold,
            limit,
            cursor,
          });
          expect(page.items.length).toBeLessThanOrEqual(limit);
          if (page.nextCursor) expect(page.items.length).toBe(limit);
          seen.push(...page.items.map((i) => i.productId));
          cursor = page.nextCursor;
        } while (cursor);
        expect({ threshold, limit, seen }).toEqual({ threshold, limit, seen: expectedFor(threshold) });
      }
    }
  });
});

describe("inventory: errors", () => {
  test("an adjustment below zero is CONFLICT with the product id, and changes nothing", async () => {
    const admin = await signUpAdmin(deps());
    const id = await insertProduct(3);
    const res = await callHttp(deps(), "inventory.adjust", "mutation", { productId: id, delta: -4 }, { token: admin.accessToken });
    expect(res.error?.code).toBe("CONFLICT");
    expect((res.error!.body as { error: { data: { productIds?: string[] } } }).error.data.productIds).toEqual([id]);
    expect(res.error?.message).not.toMatch(/check|constraint|violates/i);
    expect(await stockOf(id)).toBe(3);
  });

  test("a result above 1,000,000,000 is CONFLICT and changes nothing", async () => {
    const admin = await signUpAdmin(deps());
    const id = await insertProduct(MAX_STOCK - 10);
    expect(await errorCodeOf(admin.caller.inventory.adjust({ productId: id, delta: 11 }))).toBe("CONFLICT");
    expect(await stockOf(id)).toBe(MAX_STOCK - 10);
    expect(await admin.caller.inventory.adjust({ productId: id, delta: 10 })).toEqual({ productId: id, stock: MAX_STOCK });
  });

  test("a row already past the int range edge (set by hand) gives CONFLICT, not a 500", async () => {
    const admin = await signUpAdmin(deps());
    const id = await insertProduct(2_147_483_000);
    expect(await errorCodeOf(admin.caller.inventory.adjust({ productId: id, delta: 1_000_000 }))).toBe("CONFLICT");
    expect(await stockOf(id)).toBe(2_147_483_000);
  });

  test("unknown products are NOT_FOUND", async () => {
    const admin = await signUpAdmin(deps());
    const id = crypto.randomUUID();
    expect(await errorCodeOf(anonymous().get({ productId: id }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(admin.caller.inventory.adjust({ productId: id, delta: 1 }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(admin.caller.inventory.adjust({ productId: id, delta: -1 }))).toBe("NOT_FOUND");
    expect(await errorCodeOf(admin.caller.inventory.set({ productId: id, stock: 1 }))).toBe("NOT_FOUND");
  });

  test("a lowStock cursor of another list, or a tampered one, is BAD_REQUEST", async () => {
    const admin = await signUpAdmin(deps());
    for (let i = 0; i < 3; i++) await insertProduct(i);
    const { nextCursor } = await admin.caller.inventory.lowStock({ limit: 1 });
    expect(nextCursor).not.toBeNull();
    const foreign = encodeProductCursor("newest", { id: crypto.randomUUID(), createdAt: "2026-01-01 00:00:00", price: "1.00", name: "x" });
    for (const cursor of [foreign, `x${nextCursor}`, "%%%", Buffer.from('["low_stock",-1,"x"]').toString("base64url")]) {
      expect(await errorCodeOf(admin.caller.inventory.lowStock({ cursor }))).toBe("BAD_REQUEST");
    }
  });
});

describe("inventory: security", () => {
  test("anonymous callers get UNAUTHORIZED and customers FORBIDDEN on every admin procedure; nothing changes", async () => {
    const customer = await signUp(deps());
    const id = await insertProduct(5);
    const inputs = {
      adjust: { productId: id, delta: -5 },
      set: { productId: id, stock: 0 },
      lowStock: {},
    };
    for (const procedure of ["adjust", "set", "lowStock"] as const) {
      const call = (caller: ReturnType<typeof callerFor>) =>
        (caller.inventory[procedure] as (input: unknown) => Promise<unknown>)(inputs[procedure]);
      expect(await errorCodeOf(call(callerFor(deps())))).toBe("UNAUTHORIZED");
      expect(await errorCodeOf(call(callerFor(deps(), { token: "forged.token.value" })))).toBe("UNAUTHORIZED");
      expect(await errorCodeOf(call(customer.caller))).toBe("FORBIDDEN");
      const kind = procedure === "lowStock" ? "query" : "mutation";
      expect((await callHttp(deps(), `inventory.${procedure}`, kind, inputs[procedure])).status).toBe(401);
      expect((await callHttp(deps(), `inventory.${procedure}`, kind, inputs[procedure], { token: customer.accessToken })).status).toBe(403);
    }
    expect(await stockOf(id)).toBe(5);
    // Reading a stock level is public.
    expect(await customer.caller.inventory.get({ productId: id })).toEqual({ productId: id, stock: 5 });
  });
});

describe("inventory: bad input is BAD_REQUEST, never 500, and never echoed", () => {
  const uuid = "6f1c2a4e-8b3d-4c5e-9f60-7a8b9c0d1e2f";
  const cases: Array<[string, "query" | "mutation", unknown]> = [
    ["inventory.get", "query", { productId: "not-a-uuid" }],
    ["inventory.get", "query", { productId: 12 }],
    ["inventory.get", "query", {}],
    ["inventory.get", "query", undefined],
    ["inventory.adjust", "mutation", { productId: uuid, delta: 0 }],
    ["inventory.adjust", "mutation", { productId: uuid, delta: 1.5 }],
    ["inventory.adjust", "mutation", { productId: uuid, delta: "5" }],
    ["inventory.adjust", "mutation", { productId: uuid, delta: "1e5" }],
    ["inventory.adjust", "mutation", { productId: uuid, delta: 1_000_001 }],
    ["inventory.adjust", "mutation", { productId: uuid, delta: -1_000_001 }],
    ["inventory.adjust", "mutation", { productId: uuid, delta: 1e300 }],
    ["inventory.adjust", "mutation", { productId: uuid }],
    ["inventory.adjust", "mutation", { productId: "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", delta: 1 }],
    ["inventory.set", "mutation", { productId: uuid, stock: -1 }],
    ["inventory.set", "mutation", { productId: uuid, stock: MAX_STOCK + 1 }],
    ["inventory.set", "mutation", { productId: uuid, stock: "7" }],
    ["inventory.set", "mutation", { productId: uuid, stock: 2.5 }],
    ["inventory.set", "mutation", { productId: uuid, stock: null }],
    ["inventory.set", "mutation", { productId: "oops", stock: 1 }],
    ["inventory.lowStock", "query", { threshold: -1 }],
    ["inventory.lowStock", "query", { threshold: "5" }],
    ["inventory.lowStock", "query", { threshold: MAX_STOCK + 1 }],
    ["inventory.lowStock", "query", { limit: 0 }],
    ["inventory.lowStock", "query", { limit: 101 }],
    ["inventory.lowStock", "query", { cursor: "garbage-cursor!!" }],
    ["inventory.lowStock", "query", { cursor: "Q".repeat(2000) }],
    ["inventory.lowStock", "query", "just a string"],
  ];

  test.each(cases.map(([p, k, input]) => [p, JSON.stringify(input)?.slice(0, 60) ?? "no input", k, input] as const))(
    "%s %s",
    async (procedure, _label, kind, input) => {
      const admin = await signUpAdmin(deps());
      const res = await callHttp(deps(), procedure, kind, input, { token: admin.accessToken });
      expectBadInputRefused(res, input);
    },
  );

  test("NaN (possible through a server-side caller) is refused", async () => {
    const admin = await signUpAdmin(deps());
    const id = await insertProduct(5);
    expect(await errorCodeOf(admin.caller.inventory.adjust({ productId: id, delta: Number.NaN }))).toBe("BAD_REQUEST");
    expect(await errorCodeOf(admin.caller.inventory.set({ productId: id, stock: Number.NaN }))).toBe("BAD_REQUEST");
    expect(await errorCodeOf(admin.caller.inventory.lowStock({ threshold: Number.NaN }))).toBe("BAD_REQUEST");
    expect(await stockOf(id)).toBe(5);
  });
});

describe.if(onPostgres)("inventory: concurrency (real Postgres)", () => {
  /** Random-ish mixed-sign deltas from a fixed sequence, so a failure can be replayed. */
  const deltas = Array.from({ length: 50 }, (_, i) => ((i * 37) % 23) - 11 || 5);

  test("50 concurrent adjusts of mixed signs end exactly at the arithmetic result", async () => {
    const admin = await signUpAdmin(deps());
    // Enough that no interleaving can reach 0: every adjust must succeed.
    const start = deltas.filter((d) => d < 0).reduce((a, d) => a - d, 0);
    const id = await insertProduct(start);
    const results = await Promise.all(
      deltas.map((delta) => callerFor(deps(), { token: admin.accessToken }).inventory.adjust({ productId: id, delta })),
    );
    expect(results.every((r) => r.stock >= 0)).toBe(true);
    const expected = start + deltas.reduce((a, d) => a + d, 0);
    expect(await stockOf(id)).toBe(expected);
    // The adjust applied last returned the final level.
    expect(results.map((r) => r.stock)).toContain(expected);
  }, 60_000);

  test("when stock is scarce, the refused adjusts are CONFLICT, the rest add up exactly, and stock never goes below 0", async () => {
    const admin = await signUpAdmin(deps());
    // Mostly decrements: their sum exceeds the stock, so some must be refused in any interleaving.
    const scarce = Array.from({ length: 50 }, (_, i) => ((i * 37) % 23) - 14 || -1);
    const start = 20;
    expect(start + scarce.reduce((a, d) => a + d, 0)).toBeLessThan(0);
    const id = await insertProduct(start);
    const settled = await Promise.allSettled(
      scarce.map((delta) => callerFor(deps(), { token: admin.accessToken }).inventory.adjust({ productId: id, delta })),
    );
    let applied = 0;
    let refused = 0;
    settled.forEach((outcome, i) => {
      if (outcome.status === "fulfilled") {
        expect(outcome.value.stock).toBeGreaterThanOrEqual(0);
        applied += scarce[i]!;
      } else {
        expect(scarce[i]!).toBeLessThan(0); // only a decrement can be refused here
        expect((outcome.reason as { code?: string }).code).toBe("CONFLICT");
        refused++;
      }
    });
    const final = await stockOf(id);
    expect(final).toBe(start + applied);
    expect(final!).toBeGreaterThanOrEqual(0);
    expect(refused).toBeGreaterThan(0);
  }, 60_000);
});
