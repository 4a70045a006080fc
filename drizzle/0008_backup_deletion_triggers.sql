-- Incremental backups replay deletions from backup_deletions (0007): timestamps and xmin show
-- what was written since a backup, never what was removed. One statement-level trigger per
-- table and kind, with the deleted rows as a transition table, so a batch delete costs one
-- insert of a JSON array of keys (each key {"column": value, ...}, the table's primary key),
-- and a cascade (order_items with their order) is logged by the child table's own trigger.
-- TRUNCATE fires no DELETE trigger, so it logs its own row with keys null ("all rows").
-- The log needs no session state and no superuser: it works through PgBouncer, on Neon and on
-- PGlite. Whoever sets session_replication_role = replica (or disables the triggers) writes
-- deletions the log does not see: the backup job checks every backed-up table's triggers are
-- enabled and takes a full backup instead when one is not.
CREATE FUNCTION "public"."backup_log_deletions"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO public.backup_deletions (table_name, keys) VALUES (TG_TABLE_NAME, NULL);
  ELSE
    -- The key columns are the trigger's arguments; building each key from them alone is about
    -- half the cost of turning every deleted row into JSON first (measured on 5,000-row batches).
    EXECUTE format(
      'INSERT INTO public.backup_deletions (table_name, keys) '
      'SELECT $1, jsonb_agg(jsonb_build_object(%s)) FROM old_rows HAVING count(*) > 0',
      (SELECT string_agg(format('%L, %I', k, k), ', ') FROM unnest(TG_ARGV) AS k)
    ) USING TG_TABLE_NAME;
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
-- Attaches both triggers to a table, its primary-key columns as the trigger's arguments. A
-- migration that adds a table to the backups calls it: select public.backup_track_deletions('public.<table>');
CREATE FUNCTION "public"."backup_track_deletions"(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  pk text;
BEGIN
  SELECT string_agg(quote_literal(a.attname), ', ' ORDER BY k.ord) INTO pk
    FROM pg_catalog.pg_index i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
   WHERE i.indrelid = tbl AND i.indisprimary;
  IF pk IS NULL THEN
    RAISE EXCEPTION 'table % has no primary key: incremental backups need one', tbl;
  END IF;
  EXECUTE format('CREATE TRIGGER backup_log_deletes AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
    'FOR EACH STATEMENT EXECUTE FUNCTION public.backup_log_deletions(%s)', tbl, pk);
  EXECUTE format('CREATE TRIGGER backup_log_truncates AFTER TRUNCATE ON %s '
    'FOR EACH STATEMENT EXECUTE FUNCTION public.backup_log_deletions()', tbl);
END
$$;
--> statement-breakpoint
SELECT public.backup_track_deletions(t::regclass) FROM unnest(ARRAY[
  'public.users', 'public.products', 'public.orders', 'public.order_items', 'public.sessions',
  'public.login_throttle', 'public.order_idempotency_keys', 'public.account_status',
  'public.account_tokens', 'public.audit_events', 'public.mail_outbox', 'public.session_chains'
]) AS t;
