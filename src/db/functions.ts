// The SQL functions the service calls, written from the Drizzle schema. A function's body is text
// inside a migration, so nothing would tie its table and column names to `src/db/schema/`: here
// every name comes from a table reference (renaming a schema key fails the type check in this
// file) and `test/unit/db-functions.test.ts` checks that the newest migration defining each
// function holds exactly this text (renaming a column fails that test until a migration
// re-creates the function with the new name). The migration is what runs; this is its source.
import { getTableName } from "drizzle-orm";
import type { PgColumn, PgTable } from "drizzle-orm/pg-core";
import { type OrderStatus, orderIdempotencyKeys, orderItems, orders, products } from "./schema";

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

/** Each function the service calls, by name, with its definition as the newest migration must hold it. */
export const SQL_FUNCTIONS = { orders_place: ORDERS_PLACE } as const;
