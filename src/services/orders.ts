import { eq, inArray, type SQL, sql } from "drizzle-orm";
import { alias, type PgColumn } from "drizzle-orm/pg-core";
import * as v from "valibot";
import type { Order, OrderItem } from "../contract/types";
import { type Database, queryRows } from "../db/client";
import type { OrdersPlaceRow } from "../db/functions";
import { preparesOnServer, runStatement, statementTemplate } from "../db/prepared";
import { type OrderStatus, orderIdempotencyKeys, orderItems, orders, products, type UserRole } from "../db/schema";
import { utcNow } from "../db/schema/columns";
import { badRequest, conflict, type DomainError, notFound, sqlState } from "../errors";
import { decodeCursor, encodeCursor, timestampText, uuidText } from "../lib/cursor";
import { type Page, toPage } from "../lib/page";
import { toIso } from "../lib/time";
import { sha256Hex } from "../lib/tokens";
import { uuidv7 } from "../lib/uuidv7";
import { type AuditContext, recordAudit, systemAudit } from "./audit";
import { ORDER_TRANSITIONS, statusesThatMayMoveTo } from "./order-status";

export type { Order, OrderItem } from "../contract/types";

/** Who is asking: customers reach only their own orders, admins every order. */
export interface Actor {
  id: string;
  role: UserRole;
}
export interface CreateOrderInput {
  items: { productId: string; quantity: number }[];
  idempotencyKey?: string;
}
export interface ListOrdersInput {
  limit: number;
  cursor?: string | null;
  status?: OrderStatus;
  userId?: string;
}

/** numeric(10,2): the largest total an order row can hold. */
const MAX_TOTAL = "99999999.99";
const TOTAL_TOO_LARGE = "The order total would be above 99999999.99: order fewer items";

// An order as the database renders it (json_build_object): money and timestamps are text, so no
// numeric ever passes through a JS float and timestamps keep their microseconds for cursors.
type OrderJson = Omit<Order, "items"> & { items: OrderItem[] | null };

/** postgres.js parses json columns and PGlite does too; a driver that hands back text is also fine. */
function fromJson<T>(value: unknown): T {
  return (typeof value === "string" ? JSON.parse(value) : value) as T;
}

function toOrder(row: OrderJson): Order {
  return {
    id: row.id,
    userId: row.userId,
    status: row.status,
    total: row.total,
    createdAt: toIso(row.createdAt),
    updatedAt: toIso(row.updatedAt),
    items: row.items ?? [],
  };
}

type OrdersRef = typeof orders | ReturnType<typeof alias<typeof orders, string>>;

/** Money and timestamps as the database's text; other columns as they are. */
const asText = (column: PgColumn) =>
  column.columnType === "PgNumeric" || column.columnType === "PgTimestampString" ? sql`${column}::text` : sql`${column}`;

/** json_build_object's arguments for the given keys of a table (or alias), each under its schema key. */
function jsonPairs<T extends object>(columns: T, keys: readonly (keyof T & string)[]): SQL {
  return sql.join(
    keys.map((k) => sql`${k}::text, ${asText(columns[k] as PgColumn)}`),
    sql`, `,
  );
}

const ORDER_KEYS = ["id", "userId", "status", "total", "createdAt", "updatedAt"] as const satisfies readonly (keyof OrderRow)[];
const ITEM_KEYS = ["id", "productId", "quantity", "price"] as const satisfies readonly (keyof OrderItemRow)[];

/** The API's Order for a row of `ref` (orders or a relation with its columns), given its items' JSON array. */
const orderJson = (ref: OrdersRef, items: SQL) => sql`json_build_object(${jsonPairs(ref, ORDER_KEYS)}, 'items', ${items})`;

/** An existing order's items, read from order_items (one index probe per order, same statement). */
function storedItemsOf(ref: OrdersRef): SQL {
  const oi = alias(orderItems, "oi");
  return sql`coalesce(
  (select json_agg(json_build_object(${jsonPairs(oi, ITEM_KEYS)}) order by ${oi.productId}) from ${orderItems} ${oi} where ${oi.orderId} = ${ref.id}),
  '[]'::json)`;
}

/** The orders columns, unqualified, for RETURNING and CTE select lists. */
const orderColumns = sql.join(
  ORDER_KEYS.map((k) => sql.identifier(orders[k].name)),
  sql`, `,
);

/**
 * Merges repeated products into one line and sorts by product id (the lock order and the hash
 * order). Ids are lower-cased first: a UUID in capitals names the same product, and lower-case
 * hex sorts exactly as Postgres orders uuids, so every order locks its rows in the same order.
 */
export function mergeLines(items: CreateOrderInput["items"]): { productId: string; quantity: number }[] {
  const merged = new Map<string, number>();
  for (const { productId, quantity } of items) {
    const id = productId.toLowerCase();
    merged.set(id, (merged.get(id) ?? 0) + quantity);
  }
  return [...merged]
    .map(([productId, quantity]) => ({ productId, quantity }))
    .sort((a, b) => (a.productId < b.productId ? -1 : a.productId > b.productId ? 1 : 0));
}

async function hashRequest(lines: { productId: string; quantity: number }[]): Promise<string> {
  return sha256Hex(JSON.stringify(lines.map((l) => [l.productId, l.quantity])));
}

type OrderRow = typeof orders.$inferSelect;
type OrderItemRow = typeof orderItems.$inferSelect;

/** Thrown inside placeOrder to stop it; carries what to answer instead. Nothing was written. */
class Refusal {
  constructor(readonly failure: DomainError | "key taken") {}
}

type Line = { productId: string; quantity: number };

const p = sql.placeholder;
/** Postgres' text form of a uuid[] / integer[] parameter (bound as text on both drivers). */
const arrayText = (values: readonly (string | number)[]) => `{${values.join(",")}}`;

/**
 * orders.create's one statement: migration 0010's function, which locks the lines' products in
 * id order, refuses before writing anything (a missing product, every short line, a total above
 * numeric(10,2)), else decrements, inserts the order, its items and the idempotency key. Its
 * statements are planned once per server connection, through a transaction pooler too.
 */
const placeStatement = statementTemplate(
  "orders.create",
  () =>
    sql`select * from orders_place(${p("orderId")}::uuid, ${p("userId")}::uuid, ${p("itemIds")}::uuid[], ${p("productIds")}::uuid[], ${p("quantities")}::integer[], ${MAX_TOTAL}::numeric, ${p("key")}::varchar, ${p("requestHash")}::varchar)`,
);

/**
 * Places an order in one statement (migration 0010, `orders_place`; one round trip for the
 * order's work, all or nothing), sent in a transaction of its own:
 *  1. each line's product row is locked in product-id order (`SELECT … FOR UPDATE` by primary
 *     key), so orders cannot deadlock; a locking read that waited for another transaction sees
 *     what it committed, so a restock in flight counts and a sale in flight is subtracted;
 *  2. a missing product is NOT_FOUND, else every short line is one CONFLICT, else a total
 *     above numeric(10,2) is BAD_REQUEST: all decided before any write;
 *  3. otherwise the rows are decremented and the order, its items and, with an idempotencyKey,
 *     the key are inserted. The key's primary key makes concurrent retries collapse: a second
 *     claim waits for the first transaction, then fails with unique_violation, which aborts the
 *     whole statement; the retry then answers the first request's order.
 * Ids are made here (time-ordered, src/lib/uuidv7.ts): the order's and its items' keys land at
 * the growing edge of their B-trees instead of on a random leaf each
 * (bench/results/2026-12-02-uuidv7.md).
 */
export async function createOrder(db: Database, actor: Actor, input: CreateOrderInput): Promise<Order> {
  const lines = mergeLines(input.items);
  if (lines.length === 0) throw badRequest("items must contain 1 to 100 entries");
  const key = input.idempotencyKey;
  const requestHash = key === undefined ? undefined : await hashRequest(lines);
  try {
    return await placeOrder(db, actor, lines, key, requestHash);
  } catch (error) {
    if (!(error instanceof Refusal)) {
      // Defence in depth: the function checks the total and the stock first, but an overflow or
      // the stock CHECK must never reach the client as a 500. Either way nothing was written.
      if (sqlState(error) === "22003") throw badRequest(TOTAL_TOO_LARGE);
      if (sqlState(error) === "23514") throw await stockConflict(db, lines);
      throw error;
    }
    if (key === undefined && error.failure !== "key taken") throw error.failure;
    // With a key, an earlier request may own it; that answer wins over any stock verdict,
    // because a retry after the first request took the last units must still get its order.
    const prior = key === undefined ? undefined : await findKeyedOrder(db, actor.id, key);
    if (prior) {
      if (prior.requestHash !== requestHash) {
        throw conflict("This idempotencyKey was already used for a different order: use a new key");
      }
      return prior.order;
    }
    throw error.failure === "key taken" ? conflict("This idempotencyKey is in use by another request: retry it") : error.failure;
  }
}

async function placeOrder(db: Database, actor: Actor, lines: Line[], key?: string, requestHash?: string): Promise<Order> {
  const orderId = uuidv7();
  const itemIds = lines.map(() => uuidv7());
  let row: OrdersPlaceRow;
  try {
    const values = {
      orderId,
      userId: actor.id,
      itemIds: arrayText(itemIds),
      productIds: arrayText(lines.map((l) => l.productId)),
      quantities: arrayText(lines.map((l) => l.quantity)),
      key: key ?? null,
      requestHash: requestHash ?? null,
    };
    // In a transaction of its own, so on its own connection: with every pooled connection busy,
    // postgres.js sends a lone statement on a busy connection, where an order could wait behind
    // another order that is waiting for a row lock (bench/results/2026-12-02-slot-probes.md).
    const onServer = preparesOnServer(db);
    [row] = await db.transaction((tx) => placeStatement<OrdersPlaceRow>(tx, values, onServer));
  } catch (error) {
    // The only unique key a new order can collide on is its idempotency key (the ids are new).
    if (key !== undefined && sqlState(error) === "23505") throw new Refusal("key taken");
    throw error;
  }
  if (row.outcome === "not_found") throw new Refusal(notFound("Product"));
  if (row.outcome === "short") throw new Refusal(shortStock(row.short_ids!.split(",")));
  if (row.outcome === "too_large") throw new Refusal(badRequest(TOTAL_TOO_LARGE));
  const prices = row.prices!.split(",");
  return toOrder({
    id: orderId,
    userId: actor.id,
    status: "pending",
    total: row.order_total!,
    createdAt: row.order_created_at!,
    updatedAt: row.order_updated_at!,
    items: lines.map((l, n) => ({ id: itemIds[n], productId: l.productId, quantity: l.quantity, price: prices[n] })),
  });
}

const shortStock = (productIds: string[]) =>
  conflict("Not enough stock for some products: see data.productIds", { productIds: [...productIds].sort() });

/** CONFLICT naming the lines that are short right now (after the stock CHECK refused a write). */
async function stockConflict(db: Database, lines: { productId: string; quantity: number }[]): Promise<DomainError> {
  const rows = await db
    .select({ id: products.id, stock: products.stock })
    .from(products)
    .where(
      inArray(
        products.id,
        lines.map((l) => l.productId),
      ),
    );
  const stock = new Map(rows.map((r) => [r.id, r.stock]));
  return shortStock(lines.filter((l) => (stock.get(l.productId) ?? 0) < l.quantity).map((l) => l.productId));
}

async function findKeyedOrder(db: Database, userId: string, key: string): Promise<{ requestHash: string; order: Order } | undefined> {
  const k = orderIdempotencyKeys;
  const [row] = await runStatement<{ request_hash: string; order: unknown }>(
    db,
    sql`select ${k.requestHash} as request_hash, ${orderJson(orders, storedItemsOf(orders))} as "order"
          from ${k} join ${orders} on ${orders.id} = ${k.orderId}
         where ${k.userId} = ${userId}::uuid and ${k.key} = ${key}::varchar`,
  );
  return row ? { requestHash: row.request_hash, order: toOrder(fromJson<OrderJson>(row.order)) } : undefined;
}

const listCursor = v.tuple([timestampText, uuidText]);

/** Newest first by (created_at, id), keyset-paged; items of the whole page come in the same statement. */
export async function listOrders(db: Database, actor: Actor, input: ListOrdersInput): Promise<Page<Order>> {
  // A customer's userId is ignored: they always get their own orders.
  const userId = actor.role === "admin" ? input.userId : actor.id;
  const conditions: SQL[] = [];
  if (userId !== undefined) conditions.push(sql`${orders.userId} = ${userId}::uuid`);
  if (input.status !== undefined) conditions.push(sql`${orders.status} = ${input.status}::varchar`);
  if (input.cursor) {
    const [createdAt, id] = decodeCursor(input.cursor, listCursor);
    conditions.push(sql`(${orders.createdAt}, ${orders.id}) < (${createdAt}::timestamp, ${id}::uuid)`);
  }
  const where = conditions.length ? sql`where ${sql.join(conditions, sql` and `)}` : sql``;
  const page = alias(orders, "page");
  const rows = await runStatement<{ order: unknown }>(
    db,
    sql`with ${page} as (
          select ${orderColumns} from ${orders} ${where}
           order by ${orders.createdAt} desc, ${orders.id} desc
           limit ${input.limit + 1}::int
        )
        select ${orderJson(page, storedItemsOf(page))} as "order"
          from ${page} order by ${page.createdAt} desc, ${page.id} desc`,
  );
  const list = rows.map((r) => fromJson<OrderJson>(r.order));
  return toPage(list, input.limit, (last) => encodeCursor([last.createdAt, last.id]), toOrder);
}

/** Someone else's order is reported exactly like a missing one. */
export async function getOrder(db: Database, actor: Actor, id: string): Promise<Order> {
  const owner = actor.role === "admin" ? sql`` : sql`and ${orders.userId} = ${actor.id}::uuid`;
  const [row] = await runStatement<{ order: unknown }>(
    db,
    sql`select ${orderJson(orders, storedItemsOf(orders))} as "order" from ${orders} where ${orders.id} = ${id}::uuid ${owner}`,
  );
  if (!row) throw notFound("Order");
  return toOrder(fromJson<OrderJson>(row.order));
}

/** `in (…)` of the statuses an order may move from. */
const statusIn = (from: readonly OrderStatus[]) =>
  sql`${orders.status} in (${sql.join(
    from.map((s) => sql`${s}::varchar`),
    sql`, `,
  )})`;
const col = (c: { name: string }) => sql.identifier(c.name);

/**
 * Cancels and restocks in one statement. The status guard sits in the UPDATE's WHERE, so of any
 * number of racing cancels exactly one changes the row (the others re-check the committed status
 * and match nothing) and only that one puts the quantities back. Products are locked in id order,
 * like orders.create does.
 */
export async function cancelOrder(db: Database, actor: Actor, id: string, audit: AuditContext = systemAudit()): Promise<Order> {
  const order = await moveAudited(db, audit, id, "orders.cancelled", (tx) => cancelOrderRow(tx, actor, id));
  if (order) return order;
  throw await explainRefusal(db, actor, id, "cancelled");
}

/**
 * Runs a guarded status move in a transaction with its audit event. The order row is locked
 * first, so the status read there is exactly the one the move replaces (and racing moves queue
 * on the lock; the loser's guarded UPDATE then matches nothing, as before).
 */
async function moveAudited(
  db: Database,
  audit: AuditContext,
  id: string,
  action: "orders.cancelled" | "orders.status_changed",
  move: (tx: Database) => Promise<Order | null>,
): Promise<Order | null> {
  return db.transaction(async (tx) => {
    const [before] = await tx.select({ status: orders.status }).from(orders).where(eq(orders.id, id)).for("update");
    if (!before) return null;
    const order = await move(tx);
    if (!order) return null;
    await recordAudit(tx, audit, {
      action,
      targetType: "order",
      targetId: id,
      details: { oldStatus: before.status, newStatus: order.status },
    });
    return order;
  });
}

async function cancelOrderRow(db: Database, actor: Actor, id: string): Promise<Order | null> {
  const from = statusesThatMayMoveTo("cancelled");
  const owner = actor.role === "admin" ? sql`` : sql`and ${orders.userId} = ${actor.id}::uuid`;
  const cancelled = alias(orders, "cancelled");
  const lines = alias(orderItems, "lines");
  // The cancelled quantities per product, once its row is locked (named like order_items' columns).
  const locked = alias(orderItems, "locked");
  const restocked = alias(products, "restocked");
  const [row] = await runStatement<{ order: unknown }>(
    db,
    sql`with ${cancelled} as (
          update ${orders} set ${col(orders.status)} = ${"cancelled" satisfies OrderStatus}::varchar, ${col(orders.updatedAt)} = ${utcNow}
           where ${orders.id} = ${id}::uuid and ${statusIn(from)} ${owner}
          returning ${orderColumns}
        ),
        ${lines} as (
          select ${orderItems.productId} as ${col(orderItems.productId)}, sum(${orderItems.quantity})::int as ${col(orderItems.quantity)}
            from ${orderItems} join ${cancelled} on ${cancelled.id} = ${orderItems.orderId}
           group by ${orderItems.productId}
        ),
        ${locked} as (
          select ${products.id} as ${col(orderItems.productId)}, ${lines.quantity} as ${col(orderItems.quantity)}
            from ${products} join ${lines} on ${lines.productId} = ${products.id}
           order by ${products.id}
           for update of ${products}
        ),
        ${restocked} as (
          update ${products} set ${col(products.stock)} = ${products.stock} + ${locked.quantity}, ${col(products.updatedAt)} = ${utcNow}
            from ${locked} where ${products.id} = ${locked.productId}
          returning ${products.id}
        )
        select ${orderJson(cancelled, storedItemsOf(cancelled))} as "order" from ${cancelled}`,
  );
  return row ? toOrder(fromJson<OrderJson>(row.order)) : null;
}

/** Admin: any legal move; a move to `cancelled` restocks exactly like orders.cancel. */
export async function updateOrderStatus(
  db: Database,
  actor: Actor,
  input: { id: string; status: OrderStatus },
  audit: AuditContext = systemAudit(),
): Promise<Order> {
  if (input.status === "cancelled") return cancelOrder(db, actor, input.id, audit);
  const from = statusesThatMayMoveTo(input.status);
  const moved =
    from.length === 0
      ? null
      : await moveAudited(db, audit, input.id, "orders.status_changed", async (tx) => {
          const movedRow = alias(orders, "moved");
          const [row] = await queryRows<{ order: unknown }>(
            tx,
            sql`with ${movedRow} as (
                  update ${orders} set ${col(orders.status)} = ${input.status}::varchar, ${col(orders.updatedAt)} = ${utcNow}
                   where ${orders.id} = ${input.id}::uuid and ${statusIn(from)}
                  returning ${orderColumns}
                )
                select ${orderJson(movedRow, storedItemsOf(movedRow))} as "order" from ${movedRow}`,
          );
          return row ? toOrder(fromJson<OrderJson>(row.order)) : null;
        });
  if (moved) return moved;
  throw await explainRefusal(db, actor, input.id, input.status);
}

/** Why a guarded UPDATE matched nothing, read after the fact: missing (or not yours), or an illegal move. */
async function explainRefusal(db: Database, actor: Actor, id: string, target: OrderStatus): Promise<DomainError> {
  const [current] = await db.select({ status: orders.status, userId: orders.userId }).from(orders).where(eq(orders.id, id)).limit(1);
  if (!current || (actor.role !== "admin" && current.userId !== actor.id)) return notFound("Order");
  const next = ORDER_TRANSITIONS[current.status];
  const allowed = next.length ? `it can only become ${next.join(" or ")}` : "its status can no longer change";
  return conflict(
    target === "cancelled"
      ? `This order is ${current.status} and can no longer be cancelled`
      : `This order is ${current.status}: ${allowed}`,
  );
}
