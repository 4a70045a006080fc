// patches/drizzle-orm+0.45.4.patch rewrites mapResultRow (how Drizzle turns a driver's row array
// into the selected object) as plain loops. These tests hold it to the published version
// (test/support/oracles) on flat selects, joins with nullable sides, SQL expressions with
// their own decoders and nested selections. The function is found through the package's module
// graph; if the patch is not applied (reverted, or no longer applying after an upgrade) the tests
// are skipped and say why, and EXPECT_PATCHES (set by .ci/run) turns that into a failure when the
// run expects the other state.
import { describe, expect, test } from "bun:test";
import { createRequire } from "node:module";
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import { orderItems, orders, products, users } from "../../src/db/schema";
import { mapResultRow as published } from "../support/oracles/drizzle-map-result-row";
import { EXPECT_PATCHES, isPatched, locateDefinition, skipNote } from "../support/patches";

type MapResultRow = (
  columns: unknown[],
  row: unknown[],
  joinsNotNullableMap: Record<string, boolean> | undefined,
) => Record<string, unknown>;

const require = createRequire(import.meta.url);
const located = locateDefinition("drizzle-orm", "mapResultRow");
const applied = isPatched(located);
const NOT_APPLIED = located.esm
  ? "patches/drizzle-orm+*.patch is not applied: reverted, or it no longer applies to this version (patches/README.md)"
  : "this drizzle-orm build defines no mapResultRow: the patch is moot, drop it (patches/README.md)";

const exported = (mod: unknown) => (mod as { mapResultRow?: MapResultRow }).mapResultRow;
// Exported by the module that defines it at run time, not in its type declarations.
const patched = (located.esm ? exported(await import(located.esm)) : undefined) as MapResultRow;

describe("the Drizzle patch", () => {
  test.skipIf(!applied)(`is installed in both module formats${skipNote(applied, NOT_APPLIED)}`, () => {
    // The functions the modules export, not just the files' text, are the loop version.
    for (const fn of [patched, exported(require(located.cjs!))]) {
      expect(fn).toBeFunction();
      expect(String(fn)).not.toContain("columns.reduce");
      expect(String(fn)).not.toContain("path.entries()");
      expect(String(fn)).toContain("node[path[last]]");
    }
  });

  test.skipIf(EXPECT_PATCHES === undefined)(
    `is in the state this run expects (EXPECT_PATCHES=${EXPECT_PATCHES ?? ""})${skipNote(EXPECT_PATCHES !== undefined, "EXPECT_PATCHES is unset")}`,
    () => {
      expect(applied ? "applied" : "absent").toBe(EXPECT_PATCHES!);
    },
  );
});

// A Drizzle instance that never connects: only the select builders' field lists are needed.
const db = drizzle({ options: { parsers: {}, serializers: {} } } as never);

type Fields = { fields: unknown[]; joinsNotNullableMap?: Record<string, boolean> };
function fieldsOf(query: { prepare(name: string): unknown }): Fields {
  return query.prepare("fields") as Fields;
}

const now = "2026-11-24 23:17:00.123456";
const product = ["0190a5e4-0000-4000-8000-000000000001", "Lamp", null, "19.90", 3, now, now];

// Compared only when patched: unpatched, the installed function is the published one, and after
// an upgrade it may rightly differ from the oracle of the old version.
describe.skipIf(!applied)(`the patched drizzle mapResultRow against the published one${skipNote(applied, NOT_APPLIED)}`, () => {
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
    for (const row of [
      ["x", "12", "LAMP", "1.00", now],
      ["x", null, null, null, null],
    ]) {
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
    for (const [i, row] of rows.entries()) expect(results[i]).toEqual(published(fields, row, joinsNotNullableMap));
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
