import { sql, type SQL } from "drizzle-orm";
import type { Page } from "../lib/page";
import * as v from "valibot";
import { queryRows, type Database } from "../db/client";
import type { OrderStatus, UserRole } from "../db/schema";
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

/** A Postgres array literal for one parameter: the statement text stays the same for any number of lines. */
const arrayLiteral = (values: readonly (string | number)[]) => `{${values.join(",")}}`;

interface CreateRow {
  found: number;
  ok: boolean;
  total: string;
  short_ids: unknown;
  order: unknown;
}

/**
 * Places an order in ONE statement (one round trip, one implicit transaction):
 *  - `locked` takes the products' row locks in id order (no deadlocks between orders), and under
 *    READ COMMITTED returns each row's latest committed stock once its lock is granted;
 *  - `verdict` decides: every product exists, every line has stock, the total fits numeric(10,2);
 *  - only then (`good`) does anything get written: the idempotency key (its primary key makes
 *    concurrent retries collapse), the stock decrements, the order and its items.
 * The order id is made here so the key row can reference it; foreign keys are checked at the end
 * of the statement, after the order row exists.
 */
export async function createOrder(db: Database, actor: Actor, input: CreateOrderInput): Promise<Order> {
  const lines = mergeLines(input.items);
  if (lines.length === 0) throw badRequest("items must contain 1 to 100 entries");
  const orderId = crypto.randomUUID();
  const key = input.idempotencyKey;
  const requestHash = key === undefined ? undefined : await hashRequest(lines);

  const keyStep =
    key === undefined
      ? sql``
      : sql`claimed as (
          insert into order_idempotency_keys (user_id, key, request_hash, order_id)
          select ${actor.id}::uuid, ${key}::varchar, ${requestHash}::varchar, ${orderId}::uuid from good
          on conflict (user_id, key) do nothing
          returning 1
        ),`;
  const keyClaimed = key === undefined ? sql`` : sql`and exists (select 1 from claimed)`;

  // `upd` takes the new stock from the locked row (l.stock), not from p: under READ COMMITTED
  // the UPDATE reads p as of the statement's snapshot, which is older than the version FOR UPDATE
  // locked when another transaction changed the row in between. Postgres checks the stock CHECK
  // on the tuple computed from that old version before it notices the concurrent update and
  // re-reads the row, so p.stock - l.quantity could be refused (23514) although the current
  // stock was enough. l.stock is the current stock, and the lock keeps it so until commit.
  const statement = sql`
    with input as (
      select * from unnest(${arrayLiteral(lines.map((l) => l.productId))}::uuid[],
                           ${arrayLiteral(lines.map((l) => l.quantity))}::int[]) as t(product_id, quantity)
    ),
    locked as (
      select p.id, p.price, p.stock, i.quantity
        from products p join input i on i.product_id = p.id
       order by p.id
       for update of p
    ),
    verdict as (
      select count(*)::int as found,
             coalesce(bool_and(stock >= quantity), false) as ok,
             coalesce(sum(price * quantity), 0) as total
        from locked
    ),
    good as (
      select total from verdict where found = ${lines.length}::int and ok and total <= ${MAX_TOTAL}::numeric
    ),
    ${keyStep}
    upd as (
      update products p set stock = l.stock - l.quantity, updated_at = ${utcNow}
        from locked l
       where p.id = l.id and exists (select 1 from good) ${keyClaimed}
      returning p.id
    ),
    ord as (
      insert into orders (id, user_id, status, total)
      select ${orderId}::uuid, ${actor.id}::uuid, 'pending', total from good where true ${keyClaimed}
      returning ${orderColumns}
    ),
    items as (
      insert into order_items (order_id, product_id, quantity, price)
      select ord.id, l.id, l.quantity, l.price from ord cross join locked l
      returning id, product_id, quantity, price
    )
    select v.found, v.ok,
           case when v.total <= ${MAX_TOTAL}::numeric then v.total::text end as total,
           (select json_agg(l.id order by l.id) from locked l where l.stock < l.quantity) as short_ids,
           (select ${orderJson("ord", sql`(select json_agg(${itemJson("it")} order by it.product_id) from items it)`)}
              from ord) as "order"
      from verdict v`;

  let row: CreateRow | undefined;
  try {
    [row] = await queryRows<CreateRow & Record<string, unknown>>(db, statement);
  } catch (error) {
    // Defence in depth: the statement checks the total and the stock first, but an overflow or
    // the stock CHECK must never reach the client as a 500. Either way nothing was written.
    if (sqlState(error) === "22003") throw badRequest(TOTAL_TOO_LARGE);
    if (sqlState(error) === "23514") throw await stockConflict(db, lines);
    throw error;
  }
  if (!row) throw new Error("orders.create returned no verdict row");
  if (row.order != null) return toOrder(fromJson<OrderJson>(row.order));

  const failure =
    row.found < lines.length
      ? notFound("Product")
      : !row.ok
        ? conflict("Not enough stock for some products: see data.productIds", {
            productIds: fromJson<string[] | null>(row.short_ids) ?? [],
          })
        : row.total === null
          ? badRequest(TOTAL_TOO_LARGE)
          : undefined;
  if (key === undefined) throw failure ?? new Error("orders.create wrote nothing without a reason");
  // With a key, an earlier request may own it; that answer wins over any stock verdict,
  // because a retry after the first request took the last units must still get its order.
  const prior = await findKeyedOrder(db, actor.id, key);
  if (prior) {
    if (prior.requestHash !== requestHash) {
      throw conflict("This idempotencyKey was already used for a different order: use a new key");
    }
    return prior.order;
  }
  throw failure ?? conflict("This idempotencyKey is in use by another request: retry it");
}

/** CONFLICT naming the lines that are short right now (after the stock CHECK refused a write). */
async function stockConflict(db: Database, lines: { productId: string; quantity: number }[]): Promise<DomainError> {
  const rows = await queryRows<{ id: string }>(
    db,
    sql`select p.id from products p
          join unnest(${arrayLiteral(lines.map((l) => l.productId))}::uuid[], ${arrayLiteral(lines.map((l) => l.quantity))}::int[])
               as t(product_id, quantity) on t.product_id = p.id
         where p.stock < t.quantity order by p.id`,
  );
  return conflict("Not enough stock for some products: see data.productIds", { productIds: rows.map((r) => r.id) });
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
