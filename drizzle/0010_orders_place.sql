-- orders.create as one function (src/services/orders.ts `createOrder`). A function's statements
-- are planned once per server connection and kept there, so they stay planned through a
-- transaction pooler too, where nothing can be prepared (PgBouncer 1.18, DATABASE_PREPARE=false);
-- and the order's work is one statement, so one round trip. Measured against the plainest
-- correct transaction (bench/README.md, "orders.create as one function").
-- Schema-qualified throughout: the search_path of a pooled connection is whatever its last
-- client left (docs/operations.md, restores).
--
-- The caller passes the lines merged per product and sorted by product id, with an item id each.
-- 1. Each product row is locked in that order (`SELECT … FOR UPDATE` by primary key), so orders
--    cannot deadlock. Under READ COMMITTED a locking read that waited for another transaction
--    returns the row as that transaction committed it, so the stock checked is the newest one
--    (a restock that was in flight counts, a sale that was in flight is subtracted).
-- 2. A missing product answers 'not_found'; otherwise every short line is collected and answers
--    'short' with their ids; a total above the order column's range answers 'too_large'. These
--    answers come before any write, so a refused order writes nothing.
-- 3. Otherwise the locked rows are decremented and the order, its items and (with a key) the
--    idempotency key are inserted. The key's primary key makes concurrent retries collapse: a
--    second claim waits for the first transaction, then fails with unique_violation (23505),
--    which aborts this whole statement, so it too leaves nothing behind.
-- Money stays numeric throughout (exact); prices, total and timestamps come back as text, and
-- the lists as comma-separated text, so no driver parses arrays or numbers.
CREATE FUNCTION "public"."orders_place"(
  new_order_id uuid, buyer_id uuid, new_item_ids uuid[], line_product_ids uuid[], line_quantities integer[],
  max_total numeric, claim_key varchar, claim_request_hash varchar
)
RETURNS TABLE (outcome text, short_ids text, prices text, order_total text, order_created_at text, order_updated_at text)
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
    SELECT p.stock, p.price INTO locked_stock, locked_price
      FROM public.products p
     WHERE p.id = line_product_ids[i]
       FOR UPDATE;
    IF NOT FOUND THEN
      RETURN QUERY SELECT 'not_found'::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text;
      RETURN;
    END IF;
    IF locked_stock < line_quantities[i] THEN
      short_lines := short_lines || line_product_ids[i];
    END IF;
    line_prices := line_prices || locked_price;
    total_due := total_due + locked_price * line_quantities[i];
  END LOOP;
  IF cardinality(short_lines) > 0 THEN
    RETURN QUERY SELECT 'short'::text, array_to_string(short_lines, ','), NULL::text, NULL::text, NULL::text, NULL::text;
    RETURN;
  END IF;
  IF total_due > max_total THEN
    RETURN QUERY SELECT 'too_large'::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text;
    RETURN;
  END IF;

  FOR i IN 1 .. line_count LOOP
    UPDATE public.products p
       SET stock = p.stock - line_quantities[i], updated_at = (now() AT TIME ZONE 'utc')
     WHERE p.id = line_product_ids[i];
  END LOOP;
  INSERT INTO public.orders (id, user_id, status, total)
  VALUES (new_order_id, buyer_id, 'pending', total_due)
  RETURNING public.orders.total::text, public.orders.created_at::text, public.orders.updated_at::text
  INTO placed_total, placed_created_at, placed_updated_at;
  INSERT INTO public.order_items (id, order_id, product_id, quantity, price)
  SELECT l.id, new_order_id, l.product_id, l.quantity, l.price
    FROM unnest(new_item_ids, line_product_ids, line_quantities, line_prices) AS l(id, product_id, quantity, price);
  IF claim_key IS NOT NULL THEN
    INSERT INTO public.order_idempotency_keys (user_id, key, request_hash, order_id)
    VALUES (buyer_id, claim_key, claim_request_hash, new_order_id);
  END IF;
  RETURN QUERY SELECT 'placed'::text, NULL::text, array_to_string(line_prices, ','), placed_total, placed_created_at, placed_updated_at;
END
$$;
