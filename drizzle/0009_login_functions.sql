-- The sign-in's two statements around the password hash, as functions (src/services/auth.ts
-- `login`). A function's statements are planned once per server connection and kept there, so
-- they stay planned through a transaction pooler too, where nothing can be prepared (PgBouncer
-- 1.18, DATABASE_PREPARE=false): sent as plain statements, the two cost Postgres about 750 µs
-- per sign-in in parse and plan alone, against about 165 µs for the plainest lookup and
-- insert (bench/README.md, "login"). Schema-qualified throughout: the search_path of a pooled
-- connection is whatever its last client left (docs/operations.md, restores).
--
-- Before the hash, read-only: the account with its flags, and the throttle's counters for the
-- email and the client address whose window is still open. One row per open counter (or one
-- row of nulls), each carrying the account's columns (all null for an unknown email).
CREATE FUNCTION "public"."auth_login_read"(email_key varchar, address_key varchar, window_floor timestamp, account_email varchar)
RETURNS TABLE (
  id uuid, email varchar, password_hash varchar, role varchar, created_at timestamp, updated_at timestamp,
  email_verified boolean, disabled boolean, key varchar, failures integer, window_started_at text
) LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH counters AS (
    SELECT t.key, t.failures, t.window_started_at::text AS window_started_at
      FROM public.login_throttle t
     WHERE t.key IN (email_key, address_key) AND t.window_started_at > window_floor
  ), account AS (
    SELECT u.id, u.email, u.password_hash, u.role, u.created_at, u.updated_at,
           coalesce(s.email_verified, false) AS email_verified, coalesce(s.disabled, false) AS disabled
      FROM public.users u LEFT JOIN public.account_status s ON s.user_id = u.id
     WHERE u.email = account_email
     LIMIT 1
  )
  SELECT a.id, a.email, a.password_hash, a.role, a.created_at, a.updated_at, a.email_verified, a.disabled,
         c.key, c.failures, c.window_started_at
    FROM (SELECT) AS one LEFT JOIN account a ON true LEFT JOIN counters c ON true;
END
$$;
--> statement-breakpoint
-- After a right password, one statement that decides: the counters at their bar in this
-- statement's own snapshot are returned and nothing is written; otherwise the email's earlier
-- failures are forgiven (only a row with failures is written), and the `auth.login` event and
-- the session are inserted, all or nothing.
CREATE FUNCTION "public"."auth_login_decide"(
  email_key varchar, address_key varchar, window_floor timestamp, email_bar integer, address_bar integer,
  event_id uuid, event_at timestamp, event_actor_id uuid, event_ip varchar, event_request_id varchar,
  session_id uuid, session_user_id uuid, session_token_hash varchar, session_expires_at timestamp, session_created_at timestamp
)
RETURNS TABLE (key varchar, failures integer, window_started_at text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH at_limit AS (
    SELECT t.key, t.failures, t.window_started_at::text AS window_started_at
      FROM public.login_throttle t
     WHERE t.key IN (email_key, address_key) AND t.window_started_at > window_floor
       AND t.failures >= CASE WHEN t.key = email_key THEN email_bar ELSE address_bar END
  ), cleared AS (
    UPDATE public.login_throttle t SET failures = 0
     WHERE t.key = email_key AND t.failures > 0 AND NOT EXISTS (SELECT FROM at_limit)
  ), audited AS (
    INSERT INTO public.audit_events (id, at, action, actor_id, target_type, target_id, ip, request_id, details)
    SELECT event_id, event_at, 'auth.login', event_actor_id, 'user', session_user_id, event_ip, event_request_id, '{}'::jsonb
     WHERE NOT EXISTS (SELECT FROM at_limit)
  ), issued AS (
    INSERT INTO public.sessions (id, user_id, token_hash, expires_at, created_at)
    SELECT session_id, session_user_id, session_token_hash, session_expires_at, session_created_at
     WHERE NOT EXISTS (SELECT FROM at_limit)
  )
  SELECT l.key, l.failures, l.window_started_at FROM at_limit l;
END
$$;
