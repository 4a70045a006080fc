// The statements the service sends, written out by hand for the raw baseline (no Drizzle here).
// They must stay the statements the service runs: bench/run.ts compares the pg_stat_statements
// query ids of a service run and a baseline run and flags any difference, so drift shows up in
// the report instead of silently making the comparison unfair. The pgbench scripts are built from
// these texts too (bench/lib/pgbench.ts), so all three columns run the same SQL.

import { AUTH_LOGIN_DECIDE, AUTH_LOGIN_READ } from "../src/db/functions";

/** protectedProcedure → authenticate(): the session row, its user, its token hash, the disabled flag. */
export const SESSION_LOOKUP = `select "users"."id", "users"."email", "users"."role", "sessions"."token_hash", "account_status"."disabled" from "sessions" inner join "users" on "users"."id" = "sessions"."user_id" left join "account_status" on "account_status"."user_id" = "sessions"."user_id" where ("sessions"."id" = $1 and "sessions"."user_id" = $2 and "sessions"."expires_at" > $3) limit $4`;

/**
 * auth.login, first statement (src/services/auth.ts `login`), read-only: the account with its
 * flags and the throttle's open counters. The service sends migration 0009's function call where
 * nothing is prepared (through PgBouncer) and the function's body as a prepared statement where
 * statements are prepared (DATABASE_PREPARE=true); both texts come from src/db/functions.ts (text
 * only: nothing of Drizzle runs per request here).
 * [$1 email key, $2 address key, $3 window floor, $4 email]
 */
export const loginRead = (prepared: boolean) => (prepared ? AUTH_LOGIN_READ.statement : AUTH_LOGIN_READ.call);

/**
 * auth.login after a right password, one statement that decides (migration 0009): unless a
 * counter is at its bar (then it returns that counter and writes nothing), forgive the email's
 * failures, write the audit event and the session. Sent like `loginRead`.
 * [$1 email key, $2 address key, $3 window floor, $4 10, $5 100, $6 event id, $7 at, $8 actor,
 *  $9 ip, $10 request id, $11 session id, $12 user id, $13 token hash, $14 expires, $15 created]
 */
export const loginDecide = (prepared: boolean) => (prepared ? AUTH_LOGIN_DECIDE.statement : AUTH_LOGIN_DECIDE.call);

/**
 * auth.login after a wrong password, an unknown email or a disabled account: count the failure
 * for the email and the address, and write the failure's audit event.
 */
export const LOGIN_FAILED = `with counted as (insert into "login_throttle" ("key", "failures", "window_started_at", "expires_at") values ($1, $2, $3, $4), ($5, $6, $7, $8) on conflict ("key") do update set "failures" = case when "login_throttle"."window_started_at" <= $9::timestamp then 1 else "login_throttle"."failures" + 1 end, "window_started_at" = case when "login_throttle"."window_started_at" <= $10::timestamp then excluded."window_started_at" else "login_throttle"."window_started_at" end, "expires_at" = case when "login_throttle"."window_started_at" <= $11::timestamp then excluded."expires_at" else "login_throttle"."expires_at" end returning "key", "failures", "window_started_at"::text as "window_started_at"), audited as (insert into "audit_events" ("id", "at", "action", "actor_id", "target_type", "target_id", "ip", "request_id", "details") values ($12, $13, $14, $15, $16, $17, $18, $19, $20)) select * from counted`;

/** auth.login when the stored hash is older than today's parameters (never in the benchmark). */
export const USER_REHASH = `update "users" set "password_hash" = $1, "updated_at" = (now() at time zone 'utc') where "users"."id" = $2 returning "id", "email", "password_hash", "role", "created_at", "updated_at"`;

/** products.byId. */
export const PRODUCT_BY_ID = `select "id", "name", "description", "price", "stock", "created_at", "updated_at" from "products" where "products"."id" = $1 limit $2`;

export type ProductSort = "newest" | "price_asc" | "price_desc" | "name_asc";

export interface ListQuery {
  sort: ProductSort;
  limit: number;
  after?: [string, string];
  search?: string;
  minPrice?: string;
  maxPrice?: string;
  inStock?: boolean;
}

const AFTER: Record<ProductSort, (a: string, b: string) => string> = {
  newest: (a, b) => `("products"."created_at", "products"."id") < (${a}::timestamp, ${b}::uuid)`,
  price_asc: (a, b) => `("products"."price", "products"."id") > (${a}::numeric, ${b}::uuid)`,
  price_desc: (a, b) => `("products"."price", "products"."id") < (${a}::numeric, ${b}::uuid)`,
  name_asc: (a, b) => `("products"."name", "products"."id") > (${a}::varchar, ${b}::uuid)`,
};
const ORDER_BY: Record<ProductSort, string> = {
  newest: `"products"."created_at" desc, "products"."id" desc`,
  price_asc: `"products"."price" asc, "products"."id" asc`,
  price_desc: `"products"."price" desc, "products"."id" desc`,
  name_asc: `"products"."name" asc, "products"."id" asc`,
};

/** products.list (buildListProductsQuery): one row more than the page, to know whether one follows. */
export function listProductsStatement(q: ListQuery): { text: string; params: (string | number)[] } {
  const params: (string | number)[] = [];
  const p = (value: string | number) => {
    params.push(value);
    return `$${params.length}`;
  };
  const conditions: string[] = [];
  if (q.after) conditions.push(AFTER[q.sort](p(q.after[0]), p(q.after[1])));
  if (q.search) conditions.push(`"products"."name" ilike ${p(`%${q.search.replace(/[\\%_]/g, "\\$&")}%`)}`);
  if (q.minPrice !== undefined) conditions.push(`"products"."price" >= ${p(q.minPrice)}`);
  if (q.maxPrice !== undefined) conditions.push(`"products"."price" <= ${p(q.maxPrice)}`);
  if (q.inStock === true) conditions.push(`"products"."stock" > 0`);
  if (q.inStock === false) conditions.push(`"products"."stock" = ${p(0)}`);
  const where = conditions.length === 0 ? "" : ` where (${conditions.join(" and ")})`;
  const text = `select "id", "name", "description", "price", "stock", "created_at", "updated_at" from "products"${where} order by ${ORDER_BY[q.sort]} limit ${p(q.limit + 1)}`;
  return { text, params };
}

/** The largest total numeric(10,2) holds. */
export const MAX_TOTAL = "99999999.99";

// --- orders.create (createOrder) -----------------------------------------------------------------
// One statement: migration 0010's function (lock each line's product in id order, refuse before
// writing, else decrement and insert the order and its items). Lists as text literals.

/**
 * [$1 order id (v7), $2 user id, $3 item ids `{…}`, $4 product ids `{…}` in id order,
 *  $5 quantities `{…}`, $6 max total, $7 idempotency key or null, $8 its request hash or null]
 */
export const ORDER_PLACE = `select * from orders_place($1::uuid, $2::uuid, $3::uuid[], $4::uuid[], $5::integer[], $6::numeric, $7::varchar, $8::varchar)`;

export function orderPlaceParams(
  lines: { productId: string; quantity: number }[],
  orderId: string,
  userId: string,
  itemIds: string[],
): (string | null)[] {
  const list = (xs: (string | number)[]) => `{${xs.join(",")}}`;
  return [orderId, userId, list(itemIds), list(lines.map((l) => l.productId)), list(lines.map((l) => l.quantity)), MAX_TOTAL, null, null];
}

// The statements orders.create sent as a transaction before migration 0010, as Drizzle rendered
// them; bench/uuid-locality.ts still inserts orders with them (it compares id versions).

/** One line's stock decrement; matches only while the stock covers it. [$1 quantity, $2 product id, $3 quantity] */
export const ORDER_TAKE_STOCK = `update "products" set "stock" = "products"."stock" - $1, "updated_at" = (now() at time zone 'utc') where ("products"."id" = $2 and "products"."stock" >= $3) returning "price"`;

/** [$1 order id (v7, src/lib/uuidv7.ts), $2 user id, $3 'pending', $4 total] */
export const ORDER_INSERT = `insert into "orders" ("id", "user_id", "status", "total", "created_at", "updated_at") values ($1, $2, $3, $4, default, default) returning "id", "user_id", "status", "total", "created_at", "updated_at"`;

/** One multi-row INSERT for `n` items: [item id (v7), order id, product id, quantity, price] per item. */
export function orderItemsInsert(n: number): string {
  const rows = Array.from({ length: n }, (_, i) => `($${5 * i + 1}, $${5 * i + 2}, $${5 * i + 3}, $${5 * i + 4}, $${5 * i + 5})`);
  return `insert into "order_items" ("id", "order_id", "product_id", "quantity", "price") values ${rows.join(", ")} returning "id", "order_id", "product_id", "quantity", "price"`;
}

// --- the plainest correct SQL (BASELINE_SQL=plain): the limit the service is measured against ---

/** Per line, in product-id order. [$1 quantity, $2 product id] */
export const PLAIN_TAKE_STOCK = `update products set stock = stock - $1, updated_at = (now() at time zone 'utc') where id = $2 and stock >= $1 returning price`;
/** [$1 order id, $2 user id, $3 total] */
export const PLAIN_ORDER_INSERT = `insert into orders (id, user_id, status, total) values ($1, $2, 'pending', $3) returning created_at, updated_at`;
export function plainItemsInsert(n: number): string {
  const rows = Array.from({ length: n }, (_, i) => `($1, $${3 * i + 2}, $${3 * i + 3}, $${3 * i + 4})`);
  return `insert into order_items (order_id, product_id, quantity, price) values ${rows.join(", ")} returning id, product_id, quantity, price`;
}
/** After a missed decrement and the rollback: which of the lines exist. */
export const PLAIN_PRODUCTS_EXIST = `select id from products where id = any($1::uuid[])`;
/** auth.login, plain: the user, then (after argon2) the session. */
export const PLAIN_USER_BY_EMAIL = `select u.id, u.email, u.password_hash, u.role, u.created_at, u.updated_at, coalesce(a.email_verified, false) as email_verified, coalesce(a.disabled, false) as disabled from users u left join account_status a on a.user_id = u.id where u.email = $1`;
export const PLAIN_SESSION_INSERT = `insert into sessions (id, user_id, token_hash, expires_at, created_at) values ($1, $2, $3, $4, $5)`;
