// patches/drizzle-orm+0.45.4.patch rewrites mapResultRow (how Drizzle turns a driver's row array
// into the selected object) as plain loops. These tests hold it to the published version
// (test/support/oracles) on flat selects, joins with nullable sides, SQL expressions with
// their own decoders and nested selections, and fail if the patch is not installed.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import { orderItems, orders, products, users } from "../../src/db/schema";
import { mapResultRow as published } from "../support/oracles/drizzle-map-result-row";

// Exported by drizzle-orm/utils at run time, not in its type declarations.
const { mapResultRow: patched } = (await import("drizzle-orm/utils")) as unknown as {
  mapResultRow: (columns: unknown[], row: unknown[], joinsNotNullableMap: Record<string, boolean> | undefined) => Record<string, unknown>;
};

const require = createRequire(import.meta.url);
const distDir = dirname(require.resolve("drizzle-orm/package.json"));

// A Drizzle instance that never connects: only the select builders' field lists are needed.
const db = drizzle({ options: { parsers: {}, serializers: {} } } as never);

type Fields = { fields: unknown[]; joinsNotNullableMap?: Record<string, boolean> };
function fieldsOf(query: { prepare(name: string): unknown }): Fields {
  return query.prepare("fields") as Fields;
}

const now = "2026-11-24 23:17:00.123456";
const product = ["0190a5e4-0000-4000-8000-000000000001", "Lamp", null, "19.90", 3, now, now];

describe("the patched drizzle mapResultRow", () => {
  test("is installed in both module formats", () => {
    for (const file of ["utils.js", "utils.cjs"]) {
      expect(readFileSync(join(distDir, file), "utf8")).toContain("Patched by this project");
    }
  });

  test("a flat select of every column, with nulls", () => {
    const { fields } = fieldsOf(db.select().from(products));
    for (const row of [product, product.map(() => null), [...product.slice(0, 4), "7", now, now]]) {
      expect(patched(fields, row, undefined)).toEqual(published(fields, row, undefined));
    }
  });

  test("a partial select with SQL expressions and their decoders", () => {
    const { fields } = fieldsOf(
      db
        .select({
          id: products.id,
          total: sql<number>`sum(${products.stock})`.mapWith(Number),
          label: sql<string>`upper(${products.name})`,
          nested: { price: products.price, when: products.createdAt },
        })
        .from(products),
    );
    for (const row of [["x", "12", "LAMP", "1.00", now], ["x", null, null, null, null]]) {
      const mine = patched(fields, row, undefined);
      expect(mine).toEqual(published(fields, row, undefined));
      expect(Object.keys(mine)).toEqual(Object.keys(published(fields, row, undefined)));
    }
  });

  test("left joins: a side whose columns are all null becomes null, like Drizzle's own", () => {
    const query = db
      .select()
      .from(orders)
      .leftJoin(orderItems, sql`${orderItems.orderId} = ${orders.id}`)
      .leftJoin(users, sql`${users.id} = ${orders.userId}`);
    const { fields, joinsNotNullableMap } = fieldsOf(query);
    const orderCols = 6;
    const itemCols = 5;
    const width = (fields as unknown[]).length;
    expect(width).toBeGreaterThan(orderCols + itemCols);
    const rows = [
      Array.from({ length: width }, (_, i) => `v${i}`),
      Array.from({ length: width }, (_, i) => (i >= orderCols && i < orderCols + itemCols ? null : `v${i}`)),
      Array.from({ length: width }, (_, i) => (i >= orderCols ? null : `v${i}`)),
      Array.from({ length: width }, (_, i) => (i === orderCols + 1 ? null : `v${i}`)),
    ];
    const results = rows.map((row) => patched(fields, row, joinsNotNullableMap));
    rows.forEach((row, i) => expect(results[i]).toEqual(published(fields, row, joinsNotNullableMap)));
    // The cases reach the nullifying branch (Drizzle decides a side by its first column).
    expect(results[2].order_items).toBeNull();
    expect(results[2].users).toBeNull();
    expect(results[1].order_items).toBeNull();
    expect(results[1].users).not.toBeNull();
    expect(results[3].order_items).not.toBeNull();
  });

  test("an empty selection path maps to nothing, as before", () => {
    const { fields } = fieldsOf(db.select().from(products));
    const withEmpty = [...(fields as Array<{ path: string[]; field: unknown }>), { path: [], field: products.id }];
    const row = [...product, "ignored"];
    expect(patched(withEmpty, row, undefined)).toEqual(published(withEmpty, row, undefined));
  });
});
