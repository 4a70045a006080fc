import { and, asc, eq, lte, type SQL, sql } from "drizzle-orm";
import * as v from "valibot";
import type { LowStockItem, StockLevel } from "../contract/types";
import type { Database } from "../db/client";
import { products } from "../db/schema";
import { utcNow } from "../db/schema/columns";
import { conflict, notFound, sqlState } from "../errors";
import { decodeCursor, encodeCursor, uuidText } from "../lib/cursor";
import { type Page, toPage } from "../lib/page";
import { type AuditContext, recordAudit, systemAudit } from "./audit";

export type { LowStockItem, StockLevel } from "../contract/types";

/** The API's ceiling for a stock level (well inside the column's 32-bit integer). */
export const MAX_STOCK = 1_000_000_000;

export async function getStock(db: Database, productId: string): Promise<StockLevel> {
  const [row] = await db.select({ stock: products.stock }).from(products).where(eq(products.id, productId)).limit(1);
  if (!row) throw notFound("Product");
  return { productId, stock: row.stock };
}

/**
 * One UPDATE whose WHERE carries the guard, so the check and the write are one atomic step:
 * concurrent adjustments (and orders) serialise on the row lock and each sees the stock the
 * previous one left; none can take it below 0 or above MAX_STOCK.
 */
export async function adjustStock(
  db: Database,
  input: { productId: string; delta: number },
  audit: AuditContext = systemAudit(),
): Promise<StockLevel> {
  const next = sql`${products.stock} + ${input.delta}`;
  let row: { stock: number } | undefined;
  try {
    row = await db.transaction(async (tx) => {
      const [updated] = await tx
        .update(products)
        .set({ stock: next, updatedAt: utcNow })
        .where(and(eq(products.id, input.productId), sql`${next} >= 0`, sql`${next} <= ${MAX_STOCK}`))
        .returning({ stock: products.stock });
      if (updated) {
        await recordAudit(tx, audit, {
          action: "inventory.adjusted",
          targetType: "product",
          targetId: input.productId,
          details: { delta: input.delta, oldStock: updated.stock - input.delta, newStock: updated.stock },
        });
      }
      return updated;
    });
  } catch (error) {
    // Only reachable when a row already holds more than the API allows (set by hand in SQL).
    if (sqlState(error) === "22003") throw conflict(`Stock may not exceed ${MAX_STOCK}`);
    throw error;
  }
  if (row) return { productId: input.productId, stock: row.stock };

  // No row updated: either there is no such product or the guard refused. This read only
  // chooses the error; it decides nothing, so it may race without harm.
  const [current] = await db.select({ stock: products.stock }).from(products).where(eq(products.id, input.productId)).limit(1);
  if (!current) throw notFound("Product");
  if (input.delta < 0) {
    throw conflict("Not enough stock for this adjustment", { productIds: [input.productId] });
  }
  throw conflict(`Stock may not exceed ${MAX_STOCK}`);
}

export async function setStock(
  db: Database,
  input: { productId: string; stock: number },
  audit: AuditContext = systemAudit(),
): Promise<StockLevel> {
  return db.transaction(async (tx) => {
    const [before] = await tx.select({ stock: products.stock }).from(products).where(eq(products.id, input.productId)).for("update");
    if (!before) throw notFound("Product");
    const [row] = await tx
      .update(products)
      .set({ stock: input.stock, updatedAt: utcNow })
      .where(eq(products.id, input.productId))
      .returning({ stock: products.stock });
    if (!row) throw notFound("Product");
    await recordAudit(tx, audit, {
      action: "inventory.set",
      targetType: "product",
      targetId: input.productId,
      details: { oldStock: before.stock, newStock: row.stock },
    });
    return { productId: input.productId, stock: row.stock };
  });
}

const lowStockCursorSchema = v.strictTuple([
  v.literal("low_stock"),
  v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(2_147_483_647)),
  uuidText,
]);

export interface LowStockInput {
  threshold: number;
  limit: number;
  cursor?: string | null;
}

/** Products with stock ≤ threshold, lowest first, keyset paged by (stock, id). */
export async function listLowStock(db: Database, input: LowStockInput): Promise<Page<LowStockItem>> {
  const conditions: SQL[] = [lte(products.stock, input.threshold)];
  if (input.cursor) {
    const [, stock, id] = decodeCursor(input.cursor, lowStockCursorSchema);
    conditions.push(sql`(${products.stock}, ${products.id}) > (${stock}::integer, ${id}::uuid)`);
  }
  const rows = await db
    .select({ productId: products.id, name: products.name, stock: products.stock })
    .from(products)
    .where(and(...conditions))
    .orderBy(asc(products.stock), asc(products.id))
    .limit(input.limit + 1);
  return toPage(
    rows,
    input.limit,
    (last) => encodeCursor(["low_stock", last.stock, last.productId]),
    (row) => row,
  );
}
