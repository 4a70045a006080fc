import { and, eq, gte, inArray, sql, type SQL } from "drizzle-orm";
import type { Page } from "../lib/page";
import * as v from "valibot";
import { queryRows, type Database } from "../db/client";
import { orderIdempotencyKeys, orderItems, orders, products, type OrderStatus, type UserRole } from "../db/schema";
import { utcNow } from "../db/schema/columns";
import { badRequest, conflict, DomainError, notFound, sqlState } from "../errors";
import { decodeCursor, encodeCursor, timestampText, uuidText } from "../lib/cursor";
import { toIso } from "../lib/time";
import { sha256Hex } from "../lib/tokens";
import { ORDER_TRANSITIONS, statusesThatMayMoveTo } from "./order-status";

export interface OrderItem {
  id: string;
  productId: string;
  quantity: number;
  price: string;
}
export interface Order {
  id: string;
  userId: string;
  status: OrderStatus;
  total: string;
  createdAt: string;
  updatedAt: string;
  items: OrderItem[];
}
export type { Page } from "../lib/page";
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

const itemJson = (alias: string) =>
  sql.raw(
    `json_build_object('id', ${alias}.id, 'productId', ${alias}.product_id, 'quantity', ${alias}.quantity, 'price', ${alias}.price::text)`,
  );

/** The API's Order for the row `alias` of a relation with the orders columns, given its items' JSON array. */
const orderJson = (alias: string, items: SQL) => sql`json_build_object(
  'id', ${sql.raw(alias)}.id, 'userId', ${sql.raw(alias)}.user_id, 'status', ${sql.raw(alias)}.status,
  'total', ${sql.raw(alias)}.total::text,
  'createdAt', ${sql.raw(alias)}.created_at::text, 'updatedAt', ${sql.raw(alias)}.updated_at::text,
  'items', ${items})`;

/** An existing order's items, read from order_items (one index probe per order, same statement). */
const storedItemsOf = (alias: string) => sql`coalesce(
  (select json_agg(${itemJson("oi")} order by oi.product_id) from order_items oi where oi.order_id = ${sql.raw(alias)}.id),
  '[]'::json)`;

const orderColumns = sql.raw("id, user_id, status, total, created_at, updated_at");

/** Merges repeated products into one line and sorts by product id (the lock order and the hash order). */
export function mergeLines(items: CreateOrderInput["items"]): { productId: string; quantity: number }[] {
  const merged = new Map<string, number>();
  for (const { productId, quantity } of items) merged.set(productId, (merged.get(productId) ?? 0) + quantity);
  return [...merged]
    .map(([productId, quantity]) => ({ productId, quantity }))
    .sort((a, b) => (a.productId < b.productId ? -1 : a.productId > b.productId ? 1 : 0));
}

async function hashRequest(lines: { productId: string; quantity: number }[]): Promise<string> {
  return sha256Hex(JSON.stringify(lines.map((l) => [l.productId, l.quantity])));
}

/** numeric(10,2) money text → integer cents, and back: totals are summed exactly, never as floats. */
const toCents = (money: string): number => {
  const [whole, fraction = ""] = money.split(".");
  return Number(whole) * 100 + Number(fraction.padEnd(2, "0").slice(0, 2));
};
const fromCents = (cents: number): string => `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, "0")}`;
const MAX_TOTAL_CENTS = toCents(MAX_TOTAL);

type OrderRow = typeof orders.$inferSelect;
type OrderItemRow = typeof orderItems.$inferSelect;

/**
 * The stock decrement of one line, guarded: it matches only while the stock covers the line.
 * Under READ COMMITTED an UPDATE that waited for another transaction's row lock re-checks
 * `stock >= quantity` on the newest row version before it writes, so no order can oversell,
 * and the new stock is computed from that same version (never from an older snapshot).
 */
const takeStock = (db: Database, line: { productId: string; quantity: number }) =>
  db
    .update(products)
    .set({ stock: sql`${products.stock} - ${line.quantity}`, updatedAt: utcNow })
    .where(and(eq(products.id, line.productId), gte(products.stock, line.quantity)))
    .returning({ price: products.price });

/** The order's row and its items' rows, as the API's Order. */
function orderOf(row: OrderRow, items: OrderItemRow[]): Order {
  return {
    id: row.id,
    userId: row.userId,
    status: row.status,
    total: row.total,
    createdAt: toIso(row.createdAt),
    updatedAt: toIso(row.updatedAt),
    items: items
      .map((i) => ({ id: i.id, productId: i.productId, quantity: i.quantity, price: i.price }))
      .sort((a, b) => (a.productId < b.productId ? -1 : a.productId > b.productId ? 1 : 0)),
  };
}

/** Thrown inside the order's transaction to roll it back; carries what to answer instead. */
class Refusal {
  constructor(readonly failure: DomainError | "key taken") {}
}
/** The optimistic attempt missed a line: roll back and decide again on locked rows. */
const RETRY_LOCKED = Symbol("retry with the rows locked first");

type Line = { productId: string; quantity: number };

/**
 * Places an order in one transaction of plain statements on one connection:
 *  1. one guarded UPDATE per line in product-id order (orders lock products in the same order,
 *     so they cannot deadlock), issued together so the driver pipelines them, each returning
 *     the price it sold at. Under READ COMMITTED an UPDATE that waits for another transaction's
 *     row lock re-checks `stock >= quantity` on the newest row version before it writes, so no
 *     order oversells, and the new stock is computed from that version;
 *  2. if every line matched and the total (integer cents) fits numeric(10,2): the order, its
 *     items (one multi-row INSERT) and, with an idempotencyKey, the key, again pipelined. The
 *     key's primary key makes concurrent retries collapse: a second claim waits for the first
 *     transaction and then matches nothing, so it rolls back and answers the first one's order.
 * A guarded UPDATE skips a row without waiting when the row was short in the statement's
 * snapshot, although a transaction still holding its lock may be adding stock. So a miss is
 * not the answer: the attempt rolls back and the order is decided again with the rows locked
 * first (`SELECT … FOR UPDATE`, in id order), which waits for those transactions and sees
 * what they committed; only that verdict is refused as NOT_FOUND / CONFLICT (every short line).
 * Any refusal rolls the whole transaction back, so it changes nothing.
 */
export async function createOrder(db: Database, actor: Actor, input: CreateOrderInput): Promise<Order> {
  const lines = mergeLines(input.items);
  if (lines.length === 0) throw badRequest("items must contain 1 to 100 entries");
  const key = input.idempotencyKey;
  const requestHash = key === undefined ? undefined : await hashRequest(lines);
  const place = (lockFirst: boolean) => placeOrder(db, actor, lines, key === undefined ? undefined : { key, requestHash: requestHash! }, lockFirst);
  try {
    return await place(false).catch((error) => (error === RETRY_LOCKED ? place(true) : Promise.reject(error)));
  } catch (error) {
    if (!(error instanceof Refusal)) {
      // Defence in depth: the code checks the total and the stock first, but an overflow or the
      // stock CHECK must never reach the client as a 500. Either way nothing was written.
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

function placeOrder(
  db: Database,
  actor: Actor,
  lines: Line[],
  idempotency: { key: string; requestHash: string } | undefined,
  lockFirst: boolean,
): Promise<Order> {
  return db.transaction(async (tx) => {
    let prices: string[] | undefined;
    if (lockFirst) {
      const rows = await tx
        .select({ id: products.id, price: products.price, stock: products.stock })
        .from(products)
        .where(inArray(products.id, lines.map((l) => l.productId)))
        .orderBy(products.id)
        .for("update");
      const byId = new Map(rows.map((r) => [r.id, r]));
      if (lines.some((l) => !byId.has(l.productId))) throw new Refusal(notFound("Product"));
      const short = lines.filter((l) => byId.get(l.productId)!.stock < l.quantity);
      if (short.length > 0) throw new Refusal(shortStock(short.map((l) => l.productId)));
      prices = lines.map((l) => byId.get(l.productId)!.price);
    }
    // Locked first, the decrements cannot miss; they are pipelined with the inserts below.
    const taken = lines.map((l) => takeStock(tx, l));
    if (!prices) {
      const rows = await Promise.all(taken);
      if (rows.some((r) => r.length === 0)) throw RETRY_LOCKED;
      prices = rows.map(([r]) => r.price);
    }
    const cents = prices.reduce((sum, price, n) => sum + toCents(price) * lines[n].quantity, 0);
    if (cents > MAX_TOTAL_CENTS) throw new Refusal(badRequest(TOTAL_TOO_LARGE));

    const orderId = crypto.randomUUID();
    const [placed, items, claimed] = await Promise.all([
      tx.insert(orders).values({ id: orderId, userId: actor.id, status: "pending", total: fromCents(cents) }).returning(),
      tx
        .insert(orderItems)
        .values(lines.map((l, n) => ({ orderId, productId: l.productId, quantity: l.quantity, price: prices[n] })))
        .returning(),
      idempotency &&
        tx
          .insert(orderIdempotencyKeys)
          .values({ userId: actor.id, key: idempotency.key, requestHash: idempotency.requestHash, orderId })
          .onConflictDoNothing()
          .returning({ orderId: orderIdempotencyKeys.orderId }),
      ...(lockFirst ? taken : []),
    ]);
    if (claimed && claimed.length === 0) throw new Refusal("key taken");
    return orderOf(placed[0], items);
  });
}

const shortStock = (productIds: string[]) =>
  conflict("Not enough stock for some products: see data.productIds", { productIds: [...productIds].sort() });

/** CONFLICT naming the lines that are short right now (after the stock CHECK refused a write). */
async function stockConflict(db: Database, lines: { productId: string; quantity: number }[]): Promise<DomainError> {
  const rows = await db
    .select({ id: products.id, stock: products.stock })
    .from(products)
    .where(inArray(products.id, lines.map((l) => l.productId)));
  const stock = new Map(rows.map((r) => [r.id, r.stock]));
  return shortStock(lines.filter((l) => (stock.get(l.productId) ?? 0) < l.quantity).map((l) => l.productId));
}

async function findKeyedOrder(
  db: Database,
  userId: string,
  key: string,
): Promise<{ requestHash: string; order: Order } | undefined> {
  const [row] = await queryRows<{ request_hash: string; order: unknown }>(
    db,
    sql`select k.request_hash, ${orderJson("o", storedItemsOf("o"))} as "order"
          from order_idempotency_keys k join orders o on o.id = k.order_id
         where k.user_id = ${userId}::uuid and k.key = ${key}::varchar`,
  );
  return row ? { requestHash: row.request_hash, order: toOrder(fromJson<OrderJson>(row.order)) } : undefined;
}

const listCursor = v.tuple([timestampText, uuidText]);

/** Newest first by (created_at, id), keyset-paged; items of the whole page come in the same statement. */
export async function listOrders(db: Database, actor: Actor, input: ListOrdersInput): Promise<Page<Order>> {
  // A customer's userId is ignored: they always get their own orders.
  const userId = actor.role === "admin" ? input.userId : actor.id;
  const conditions: SQL[] = [];
  if (userId !== undefined) conditions.push(sql`o.user_id = ${userId}::uuid`);
  if (input.status !== undefined) conditions.push(sql`o.status = ${input.status}::varchar`);
  if (input.cursor) {
    const [createdAt, id] = decodeCursor(input.cursor, listCursor);
    conditions.push(sql`(o.created_at, o.id) < (${createdAt}::timestamp, ${id}::uuid)`);
  }
  const where = conditions.length ? sql`where ${sql.join(conditions, sql` and `)}` : sql``;
  const rows = await queryRows<{ order: unknown }>(
    db,
    sql`with page as (
          select ${orderColumns} from orders o ${where}
           order by o.created_at desc, o.id desc
           limit ${input.limit + 1}::int
        )
        select ${orderJson("page", storedItemsOf("page"))} as "order"
          from page order by page.created_at desc, page.id desc`,
  );
  const orders = rows.map((r) => fromJson<OrderJson>(r.order));
  const more = orders.length > input.limit;
  const pageRows = more ? orders.slice(0, input.limit) : orders;
  const last = pageRows.at(-1);
  return {
    items: pageRows.map(toOrder),
    nextCursor: more && last ? encodeCursor([last.createdAt, last.id]) : null,
  };
}

/** Someone else's order is reported exactly like a missing one. */
export async function getOrder(db: Database, actor: Actor, id: string): Promise<Order> {
  const owner = actor.role === "admin" ? sql`` : sql`and o.user_id = ${actor.id}::uuid`;
  const [row] = await queryRows<{ order: unknown }>(
    db,
    sql`select ${orderJson("o", storedItemsOf("o"))} as "order" from orders o where o.id = ${id}::uuid ${owner}`,
  );
  if (!row) throw notFound("Order");
  return toOrder(fromJson<OrderJson>(row.order));
}

/**
 * Cancels and restocks in one statement. The status guard sits in the UPDATE's WHERE, so of any
 * number of racing cancels exactly one changes the row (the others re-check the committed status
 * and match nothing) and only that one puts the quantities back. Products are locked in id order,
 * like orders.create does.
 */
export async function cancelOrder(db: Database, actor: Actor, id: string): Promise<Order> {
  const from = statusesThatMayMoveTo("cancelled");
  const owner = actor.role === "admin" ? sql`` : sql`and user_id = ${actor.id}::uuid`;
  const [row] = await queryRows<{ order: unknown }>(
    db,
    sql`with cancelled as (
          update orders set status = 'cancelled', updated_at = ${utcNow}
           where id = ${id}::uuid and status in (${sql.join(from.map((s) => sql`${s}::varchar`), sql`, `)}) ${owner}
          returning ${orderColumns}
        ),
        lines as (
          select oi.product_id, sum(oi.quantity)::int as quantity
            from order_items oi join cancelled c on c.id = oi.order_id
           group by oi.product_id
        ),
        locked as (
          select p.id, l.quantity from products p join lines l on l.product_id = p.id
           order by p.id
           for update of p
        ),
        restocked as (
          update products p set stock = p.stock + l.quantity, updated_at = ${utcNow}
            from locked l where p.id = l.id
          returning p.id
        )
        select ${orderJson("c", storedItemsOf("c"))} as "order" from cancelled c`,
  );
  if (row) return toOrder(fromJson<OrderJson>(row.order));
  throw await explainRefusal(db, actor, id, "cancelled");
}

/** Admin: any legal move; a move to `cancelled` restocks exactly like orders.cancel. */
export async function updateOrderStatus(
  db: Database,
  actor: Actor,
  input: { id: string; status: OrderStatus },
): Promise<Order> {
  if (input.status === "cancelled") return cancelOrder(db, actor, input.id);
  const from = statusesThatMayMoveTo(input.status);
  if (from.length > 0) {
    const [row] = await queryRows<{ order: unknown }>(
      db,
      sql`with moved as (
            update orders set status = ${input.status}::varchar, updated_at = ${utcNow}
             where id = ${input.id}::uuid and status in (${sql.join(from.map((s) => sql`${s}::varchar`), sql`, `)})
            returning ${orderColumns}
          )
          select ${orderJson("moved", storedItemsOf("moved"))} as "order" from moved`,
    );
    if (row) return toOrder(fromJson<OrderJson>(row.order));
  }
  throw await explainRefusal(db, actor, input.id, input.status);
}

/** Why a guarded UPDATE matched nothing, read after the fact: missing (or not yours), or an illegal move. */
async function explainRefusal(db: Database, actor: Actor, id: string, target: OrderStatus): Promise<DomainError> {
  const [current] = await queryRows<{ status: OrderStatus; user_id: string }>(
    db,
    sql`select status, user_id from orders where id = ${id}::uuid`,
  );
  if (!current || (actor.role !== "admin" && current.user_id !== actor.id)) return notFound("Order");
  const next = ORDER_TRANSITIONS[current.status];
  const allowed = next.length ? `it can only become ${next.join(" or ")}` : "its status can no longer change";
  return conflict(
    target === "cancelled"
      ? `This order is ${current.status} and can no longer be cancelled`
      : `This order is ${current.status}: ${allowed}`,
  );
}
