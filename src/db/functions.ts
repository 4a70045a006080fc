// The SQL functions the service calls, written from the Drizzle schema. A function's body is text
// inside a migration, so nothing would tie its table and column names to `src/db/schema/`: here
// every name comes from a table reference (renaming a schema key fails the type check in this
// file) and `test/unit/db-functions.test.ts` checks that the newest migration defining each
// function holds exactly this text (renaming a column fails that test until a migration
// re-creates the function with the new name). The migration is what runs; this is its source.
import { getTableName } from "drizzle-orm";
import type { PgColumn, PgTable } from "drizzle-orm/pg-core";
import {
  accountStatus,
  auditEvents,
  loginThrottle,
  type OrderStatus,
  orderIdempotencyKeys,
  orderItems,
  orders,
  products,
  sessions,
  users,
} from "./schema";

/** A table, schema-qualified: the search_path of a pooled connection is whatever its last client left. */
const table = (t: PgTable) => `public.${getTableName(t)}`;
/** A column's name (the schema's names need no quoting). */
const col = (c: PgColumn) => c.name;
/** `alias.column`. */
const at = (alias: string, c: PgColumn) => `${alias}.${c.name}`;

const pending: OrderStatus = "pending";
const p = products;
const o = orders;
const i = orderItems;
const k = orderIdempotencyKeys;

/** What `orders_place` returns (one row, every value text; lists comma-separated). */
export const ORDERS_PLACE_COLUMNS = ["outcome", "short_ids", "prices", "order_total", "order_created_at", "order_updated_at"] as const;
export type OrdersPlaceRow = { outcome: "placed" | "not_found" | "short" | "too_large" } & Record<
  Exclude<(typeof ORDERS_PLACE_COLUMNS)[number], "outcome">,
  string | null
>;

const nulls = (n: number) => Array.from({ length: n }, () => "NULL::text").join(", ");

/** orders.create in one statement (migration 0010; what it does: docs/architecture.md, "Placing an order"). */
export const ORDERS_PLACE = `CREATE FUNCTION "public"."orders_place"(
  new_order_id uuid, buyer_id uuid, new_item_ids uuid[], line_product_ids uuid[], line_quantities integer[],
  max_total numeric, claim_key varchar, claim_request_hash varchar
)
RETURNS TABLE (${ORDERS_PLACE_COLUMNS.map((c) => `${c} text`).join(", ")})
LANGUAGE plpgsql AS $$
DECLARE
  line_count integer := cardinality(line_product_ids);
  locked_stock integer;
  locked_price numeric;
  line_prices numeric[] := '{}';
  short_lines uuid[] := '{}';
  total_due numeric := 0;
  placed_total text;
  placed_created_at text;
  placed_updated_at text;
BEGIN
  FOR i IN 1 .. line_count LOOP
    SELECT ${at("p", p.stock)}, ${at("p", p.price)} INTO locked_stock, locked_price
      FROM ${table(p)} p
     WHERE ${at("p", p.id)} = line_product_ids[i]
       FOR UPDATE;
    IF NOT FOUND THEN
      RETURN QUERY SELECT 'not_found'::text, ${nulls(5)};
      RETURN;
    END IF;
    IF locked_stock < line_quantities[i] THEN
      short_lines := short_lines || line_product_ids[i];
    END IF;
    line_prices := line_prices || locked_price;
    total_due := total_due + locked_price * line_quantities[i];
  END LOOP;
  IF cardinality(short_lines) > 0 THEN
    RETURN QUERY SELECT 'short'::text, array_to_string(short_lines, ','), ${nulls(4)};
    RETURN;
  END IF;
  IF total_due > max_total THEN
    RETURN QUERY SELECT 'too_large'::text, ${nulls(5)};
    RETURN;
  END IF;

  FOR i IN 1 .. line_count LOOP
    UPDATE ${table(p)} p
       SET ${col(p.stock)} = ${at("p", p.stock)} - line_quantities[i], ${col(p.updatedAt)} = (now() AT TIME ZONE 'utc')
     WHERE ${at("p", p.id)} = line_product_ids[i];
  END LOOP;
  INSERT INTO ${table(o)} (${col(o.id)}, ${col(o.userId)}, ${col(o.status)}, ${col(o.total)})
  VALUES (new_order_id, buyer_id, '${pending}', total_due)
  RETURNING ${at(table(o), o.total)}::text, ${at(table(o), o.createdAt)}::text, ${at(table(o), o.updatedAt)}::text
  INTO placed_total, placed_created_at, placed_updated_at;
  INSERT INTO ${table(i)} (${col(i.id)}, ${col(i.orderId)}, ${col(i.productId)}, ${col(i.quantity)}, ${col(i.price)})
  SELECT l.id, new_order_id, l.product_id, l.quantity, l.price
    FROM unnest(new_item_ids, line_product_ids, line_quantities, line_prices) AS l(id, product_id, quantity, price);
  IF claim_key IS NOT NULL THEN
    INSERT INTO ${table(k)} (${col(k.userId)}, ${col(k.key)}, ${col(k.requestHash)}, ${col(k.orderId)})
    VALUES (buyer_id, claim_key, claim_request_hash, new_order_id);
  END IF;
  RETURN QUERY SELECT 'placed'::text, NULL::text, array_to_string(line_prices, ','), placed_total, placed_created_at, placed_updated_at;
END
$$;`;

// --- the sign-in (migration 0009) -------------------------------------------------------------
//
// Each sign-in statement is written once, as a body over its named parameters, and used two ways:
//  - `definition`: the plpgsql function of migration 0009, whose body is planned once per server
//    connection, so it stays planned through a transaction pooler where nothing can be prepared;
//  - `statement`: the same body with each parameter as `$n::type`, sent as a server-side prepared
//    statement where the connection keeps them (DATABASE_PREPARE=true). There it is planned once
//    per connection too, and skips the call around it: pgbench of each alone, prepared, one
//    client, straight to Postgres 15, measured 54 against 18 µs of execution (pg_stat_statements)
//    for the read and 157 against 109 µs for the decision, and 0.42 against 0.38 ms for the
//    pair end to end (bench/README.md, "2026-12-02, 17:20–18:10 UTC").
// `call` is the function's call with the same parameters in the same order, so one list of values
// serves either text.

/** A parameter: its name inside the function, and its SQL type (a cast in the bare statement). */
type Param = readonly [name: string, type: string];

export interface LoginStatement<N extends string> {
  /** `CREATE FUNCTION …`, exactly as the newest migration defining it holds it. */
  definition: string;
  /** `select * from <function>($1::type, …)`. */
  call: string;
  /** The body alone, its parameters as `$1::type, …`. */
  statement: string;
  /** The parameters' names, in the order of `$1, $2, …` in `call` and `statement`. */
  params: readonly N[];
}

function loginStatement<const P extends readonly Param[]>(spec: {
  name: string;
  params: P;
  /** Five parameters per line when the list does not fit on the first. */
  wrapParams?: boolean;
  returns: string;
  volatility: "STABLE " | "";
  body: (arg: Record<P[number][0], string>) => string;
}): LoginStatement<P[number][0]> {
  type N = P[number][0];
  const named = Object.fromEntries(spec.params.map(([n]) => [n, n])) as Record<N, string>;
  const positional = Object.fromEntries(spec.params.map(([n, t], i) => [n, `$${i + 1}::${t}`])) as Record<N, string>;
  const declared = spec.params.map(([n, t]) => `${n} ${t}`);
  const signature = spec.wrapParams
    ? `\n${Array.from({ length: Math.ceil(declared.length / 5) }, (_, k) => `  ${declared.slice(5 * k, 5 * k + 5).join(", ")}`).join(",\n")}\n`
    : declared.join(", ");
  return {
    definition: `CREATE FUNCTION "public"."${spec.name}"(${signature})
RETURNS TABLE ${spec.returns} LANGUAGE plpgsql ${spec.volatility}AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  ${spec.body(named)};
END
$$;`,
    call: `select * from ${spec.name}(${Object.values<string>(positional).join(", ")})`,
    statement: spec.body(positional),
    params: spec.params.map(([n]) => n) as N[],
  };
}

const t = loginThrottle;
const u = users;
const s = accountStatus;
const e = auditEvents;
const ss = sessions;

/** Before the hash, read-only: the account with its flags, and the throttle's counters still open for the email and the address. */
export const AUTH_LOGIN_READ = loginStatement({
  name: "auth_login_read",
  params: [
    ["email_key", "varchar"],
    ["address_key", "varchar"],
    ["window_floor", "timestamp"],
    ["account_email", "varchar"],
  ],
  returns: `(
  ${col(u.id)} uuid, ${col(u.email)} varchar, ${col(u.passwordHash)} varchar, ${col(u.role)} varchar, ${col(u.createdAt)} timestamp, ${col(u.updatedAt)} timestamp,
  ${col(s.emailVerified)} boolean, ${col(s.disabled)} boolean, ${col(t.key)} varchar, ${col(t.failures)} integer, ${col(t.windowStartedAt)} text
)`,
  volatility: "STABLE ",
  body: (a) => `WITH counters AS (
    SELECT ${at("t", t.key)}, ${at("t", t.failures)}, ${at("t", t.windowStartedAt)}::text AS ${col(t.windowStartedAt)}
      FROM ${table(t)} t
     WHERE ${at("t", t.key)} IN (${a.email_key}, ${a.address_key}) AND ${at("t", t.windowStartedAt)} > ${a.window_floor}
  ), account AS (
    SELECT ${at("u", u.id)}, ${at("u", u.email)}, ${at("u", u.passwordHash)}, ${at("u", u.role)}, ${at("u", u.createdAt)}, ${at("u", u.updatedAt)},
           coalesce(${at("s", s.emailVerified)}, false) AS ${col(s.emailVerified)}, coalesce(${at("s", s.disabled)}, false) AS ${col(s.disabled)}
      FROM ${table(u)} u LEFT JOIN ${table(s)} s ON ${at("s", s.userId)} = ${at("u", u.id)}
     WHERE ${at("u", u.email)} = ${a.account_email}
     LIMIT 1
  )
  SELECT ${[u.id, u.email, u.passwordHash, u.role, u.createdAt, u.updatedAt, s.emailVerified, s.disabled].map((c) => `a.${col(c)}`).join(", ")},
         c.${col(t.key)}, c.${col(t.failures)}, c.${col(t.windowStartedAt)}
    FROM (SELECT) AS one LEFT JOIN account a ON true LEFT JOIN counters c ON true`,
});

/**
 * After a right password, one statement that decides: the counters at their bar in this
 * statement's own snapshot are returned and nothing is written; otherwise the email's earlier
 * failures are forgiven (only a row with failures is written), and the `auth.login` event and the
 * session are inserted, all or nothing.
 */
export const AUTH_LOGIN_DECIDE = loginStatement({
  name: "auth_login_decide",
  wrapParams: true,
  params: [
    ["email_key", "varchar"],
    ["address_key", "varchar"],
    ["window_floor", "timestamp"],
    ["email_bar", "integer"],
    ["address_bar", "integer"],
    ["event_id", "uuid"],
    ["event_at", "timestamp"],
    ["event_actor_id", "uuid"],
    ["event_ip", "varchar"],
    ["event_request_id", "varchar"],
    ["session_id", "uuid"],
    ["session_user_id", "uuid"],
    ["session_token_hash", "varchar"],
    ["session_expires_at", "timestamp"],
    ["session_created_at", "timestamp"],
  ],
  returns: `(${col(t.key)} varchar, ${col(t.failures)} integer, ${col(t.windowStartedAt)} text)`,
  volatility: "",
  body: (a) => `WITH at_limit AS (
    SELECT ${at("t", t.key)}, ${at("t", t.failures)}, ${at("t", t.windowStartedAt)}::text AS ${col(t.windowStartedAt)}
      FROM ${table(t)} t
     WHERE ${at("t", t.key)} IN (${a.email_key}, ${a.address_key}) AND ${at("t", t.windowStartedAt)} > ${a.window_floor}
       AND ${at("t", t.failures)} >= CASE WHEN ${at("t", t.key)} = ${a.email_key} THEN ${a.email_bar} ELSE ${a.address_bar} END
  ), cleared AS (
    UPDATE ${table(t)} t SET ${col(t.failures)} = 0
     WHERE ${at("t", t.key)} = ${a.email_key} AND ${at("t", t.failures)} > 0 AND NOT EXISTS (SELECT FROM at_limit)
  ), audited AS (
    INSERT INTO ${table(e)} (${[e.id, e.at, e.action, e.actorId, e.targetType, e.targetId, e.ip, e.requestId, e.details].map(col).join(", ")})
    SELECT ${a.event_id}, ${a.event_at}, 'auth.login', ${a.event_actor_id}, 'user', ${a.session_user_id}, ${a.event_ip}, ${a.event_request_id}, '{}'::jsonb
     WHERE NOT EXISTS (SELECT FROM at_limit)
  ), issued AS (
    INSERT INTO ${table(ss)} (${[ss.id, ss.userId, ss.tokenHash, ss.expiresAt, ss.createdAt].map(col).join(", ")})
    SELECT ${a.session_id}, ${a.session_user_id}, ${a.session_token_hash}, ${a.session_expires_at}, ${a.session_created_at}
     WHERE NOT EXISTS (SELECT FROM at_limit)
  )
  SELECT l.${col(t.key)}, l.${col(t.failures)}, l.${col(t.windowStartedAt)} FROM at_limit l`,
});

export type LoginReadParam = (typeof AUTH_LOGIN_READ.params)[number];
export type LoginDecideParam = (typeof AUTH_LOGIN_DECIDE.params)[number];

/** Each function the service calls, by name, with its definition as the newest migration must hold it. */
export const SQL_FUNCTIONS = {
  orders_place: ORDERS_PLACE,
  auth_login_read: AUTH_LOGIN_READ.definition,
  auth_login_decide: AUTH_LOGIN_DECIDE.definition,
} as const;
