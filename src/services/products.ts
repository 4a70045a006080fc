import { and, asc, desc, eq, gte, ilike, lte, type SQL, sql } from "drizzle-orm";
import * as v from "valibot";
import type { Product } from "../contract/types";
import type { Database } from "../db/client";
import { preparedQuery } from "../db/prepared";
import { products } from "../db/schema";
import { utcNow } from "../db/schema/columns";
import { badRequest, conflict, notFound, sqlState } from "../errors";
import { calendarTimestampText, decodeCursor, encodeCursor, uuidText } from "../lib/cursor";
import { type Page, toPage } from "../lib/page";
import { toIso } from "../lib/time";
import { noNul } from "../lib/validation";
import { type AuditContext, recordAudit, systemAudit } from "./audit";

export type { Product } from "../contract/types";

export const productSorts = ["newest", "price_asc", "price_desc", "name_asc"] as const;
export type ProductSort = (typeof productSorts)[number];

export interface ListProductsInput {
  limit: number;
  cursor?: string | null;
  search?: string;
  minPrice?: string;
  maxPrice?: string;
  inStock?: boolean;
  sort: ProductSort;
}

export interface CreateProductInput {
  name: string;
  description?: string | null;
  price: string;
  stock?: number;
}

export interface UpdateProductInput {
  id: string;
  name?: string;
  description?: string | null;
  price?: string;
}

type ProductRow = typeof products.$inferSelect;

export function toProduct(row: ProductRow): Product {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    price: row.price,
    stock: row.stock,
    createdAt: toIso(row.createdAt),
    updatedAt: toIso(row.updatedAt),
  };
}

// --- Cursors -------------------------------------------------------------------------------
// A cursor is [sort, sort key, id]. The key is the database's own text (created_at to the
// microsecond, price as numeric text), so the next page starts exactly after the last row;
// an ISO string with milliseconds would skip or repeat rows created within the same millisecond.

const priceText = v.pipe(v.string(), v.regex(/^\d{1,8}\.\d{2}$/));
const nameText = v.pipe(v.string(), v.maxLength(255), noNul("cursor"));

const productCursorSchema = v.union([
  v.strictTuple([v.literal("newest"), calendarTimestampText, uuidText]),
  v.strictTuple([v.literal("price_asc"), priceText, uuidText]),
  v.strictTuple([v.literal("price_desc"), priceText, uuidText]),
  v.strictTuple([v.literal("name_asc"), nameText, uuidText]),
]);

type ProductCursor = v.InferOutput<typeof productCursorSchema>;

export function encodeProductCursor(sort: ProductSort, row: Pick<ProductRow, "id" | "createdAt" | "price" | "name">): string {
  const key = sort === "newest" ? row.createdAt : sort === "name_asc" ? row.name : row.price;
  return encodeCursor([sort, key, row.id]);
}

/** The cursor's position, refused when it was issued for another sort (its key means something else). */
export function decodeProductCursor(cursor: string, sort: ProductSort): ProductCursor {
  const decoded = decodeCursor(cursor, productCursorSchema);
  if (decoded[0] !== sort) throw badRequest("cursor belongs to another sort: pass the nextCursor of a page with the same sort");
  return decoded;
}

/** `%`, `_` and the escape character itself are literal in a search term. */
export function escapeLikePattern(term: string): string {
  return term.replace(/[\\%_]/g, "\\$&");
}

/** The values of one list call; a condition is in the query exactly when its value is set. */
interface ListParams {
  cursorKey?: string;
  cursorId?: string;
  pattern?: string;
  minPrice?: string;
  maxPrice?: string;
  limit: number;
}

function listParams(input: ListProductsInput): ListParams {
  const params: ListParams = { limit: input.limit + 1 };
  if (input.cursor) {
    const [, key, id] = decodeProductCursor(input.cursor, input.sort);
    params.cursorKey = String(key);
    params.cursorId = id;
  }
  if (input.search) params.pattern = `%${escapeLikePattern(input.search)}%`;
  if (input.minPrice !== undefined) params.minPrice = input.minPrice;
  if (input.maxPrice !== undefined) params.maxPrice = input.maxPrice;
  return params;
}

type Bind = (name: keyof ListParams) => unknown;

function afterCursor(sort: ProductSort, bind: Bind): SQL {
  const key = bind("cursorKey");
  const id = sql`${bind("cursorId")}::uuid`;
  switch (sort) {
    case "newest":
      return sql`(${products.createdAt}, ${products.id}) < (${key}::timestamp, ${id})`;
    case "price_asc":
      return sql`(${products.price}, ${products.id}) > (${key}::numeric, ${id})`;
    case "price_desc":
      return sql`(${products.price}, ${products.id}) < (${key}::numeric, ${id})`;
    case "name_asc":
      return sql`(${products.name}, ${products.id}) > (${key}::varchar, ${id})`;
  }
}

const ORDER: Record<ProductSort, SQL[]> = {
  newest: [desc(products.createdAt), desc(products.id)],
  price_asc: [asc(products.price), asc(products.id)],
  price_desc: [desc(products.price), desc(products.id)],
  name_asc: [asc(products.name), asc(products.id)],
};

/** The list query for one shape; `bind` gives either the values or placeholders for them. */
function buildList(db: Database, sort: ProductSort, inStock: boolean | undefined, params: ListParams, bind: Bind) {
  const conditions: SQL[] = [];
  // Row comparisons match the (key, id) ordering exactly and are usable as index conditions.
  if (params.cursorKey !== undefined) conditions.push(afterCursor(sort, bind));
  if (params.pattern !== undefined) conditions.push(ilike(products.name, sql`${bind("pattern")}`));
  if (params.minPrice !== undefined) conditions.push(gte(products.price, sql`${bind("minPrice")}::numeric`));
  if (params.maxPrice !== undefined) conditions.push(lte(products.price, sql`${bind("maxPrice")}::numeric`));
  if (inStock === true) conditions.push(sql`${products.stock} > 0`);
  if (inStock === false) conditions.push(eq(products.stock, 0));
  return db
    .select()
    .from(products)
    .where(and(...conditions))
    .orderBy(...ORDER[sort])
    .limit(bind("limit") as number | ReturnType<typeof sql.placeholder>);
}

/**
 * The exact query `listProducts` runs (one row more than the page, to know whether another
 * page follows), with its values inline. Exported so the EXPLAIN test checks this SQL and
 * cannot drift from it.
 */
export function buildListProductsQuery(db: Database, input: ListProductsInput) {
  const params = listParams(input);
  return buildList(db, input.sort, input.inStock, params, (name) => params[name]);
}

export async function listProducts(db: Database, input: ListProductsInput): Promise<Page<Product>> {
  const params = listParams(input);
  // One prepared query per shape (sort, stock filter, which values are present): at most 192.
  const shape = [
    input.sort,
    String(input.inStock),
    ...Object.keys(params)
      .filter((k) => params[k as keyof ListParams] !== undefined)
      .sort(),
  ].join(":");
  const rows = await preparedQuery(db, `products.list:${shape}`, () =>
    buildList(db, input.sort, input.inStock, params, (name) => sql.placeholder(name)),
  ).execute(params as unknown as Record<string, unknown>);
  return toPage(rows, input.limit, (last) => encodeProductCursor(input.sort, last), toProduct);
}

export async function getProduct(db: Database, id: string): Promise<Product> {
  const [row] = await preparedQuery(db, "products.byId", () =>
    db
      .select()
      .from(products)
      .where(eq(products.id, sql.placeholder("id")))
      .limit(1),
  ).execute({ id });
  if (!row) throw notFound("Product");
  return toProduct(row);
}

export async function createProduct(db: Database, input: CreateProductInput, audit: AuditContext = systemAudit()): Promise<Product> {
  return db.transaction(async (tx) => {
    const [row] = await tx
      .insert(products)
      .values({ name: input.name, description: input.description ?? null, price: input.price, stock: input.stock ?? 0 })
      .returning();
    if (!row) throw new Error("insert into products returned no row");
    await recordAudit(tx, audit, {
      action: "products.created",
      targetType: "product",
      targetId: row.id,
      details: { name: row.name, newPrice: row.price, newStock: row.stock },
    });
    return toProduct(row);
  });
}

/** Changes name, description and price only: stock moves through the inventory service. */
export async function updateProduct(db: Database, input: UpdateProductInput, audit: AuditContext = systemAudit()): Promise<Product> {
  const changes: Partial<typeof products.$inferInsert> = {};
  if (input.name !== undefined) changes.name = input.name;
  if (input.description !== undefined) changes.description = input.description;
  if (input.price !== undefined) changes.price = input.price;
  if (Object.keys(changes).length === 0) throw badRequest("Give at least one of name, description or price to change");
  return db.transaction(async (tx) => {
    // The row lock makes the price read here the one this update replaces.
    const [before] = await tx
      .select({ price: products.price, name: products.name })
      .from(products)
      .where(eq(products.id, input.id))
      .for("update");
    if (!before) throw notFound("Product");
    const [row] = await tx
      .update(products)
      .set({ ...changes, updatedAt: utcNow })
      .where(eq(products.id, input.id))
      .returning();
    if (!row) throw notFound("Product");
    await recordAudit(tx, audit, {
      action: "products.updated",
      targetType: "product",
      targetId: row.id,
      details: {
        ...(input.price !== undefined ? { oldPrice: before.price, newPrice: row.price } : {}),
        ...(input.name !== undefined ? { name: row.name } : {}),
      },
    });
    return toProduct(row);
  });
}

/**
 * One DELETE: the order_items foreign key refuses it while any order line references the
 * product, so a racing order either commits first (and we get CONFLICT) or finds no product.
 */
export async function deleteProduct(db: Database, id: string, audit: AuditContext = systemAudit()): Promise<{ ok: true }> {
  try {
    return await db.transaction(async (tx) => {
      const deleted = await tx.delete(products).where(eq(products.id, id)).returning({ id: products.id, name: products.name });
      if (deleted.length === 0) throw notFound("Product");
      await recordAudit(tx, audit, {
        action: "products.deleted",
        targetType: "product",
        targetId: id,
        details: { name: deleted[0]!.name },
      });
      return { ok: true as const };
    });
  } catch (error) {
    if (sqlState(error) === "23503") {
      throw conflict("This product appears in orders and cannot be deleted; set its stock to 0 instead");
    }
    throw error;
  }
}
