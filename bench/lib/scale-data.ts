// Bulk data for the scale-orders scenario: customers, sessions and orders with their items made
// inside Postgres by set-based INSERT … SELECT over generate_series, one chunk per statement (a
// progress bar per chunk). Ten million orders through the service would take hours and measure
// the loader; what is measured afterwards is the service on the data.
//
// Every random choice is a hash of the row number (hashint8extended with a seed per attribute),
// so two runs with the same --orders make the same shape of data (ids stay gen_random_uuid(),
// as the schema's defaults make them).
import type postgres from "postgres";
import { HARNESS_MARK } from "./postgres";
import { progressBar } from "./proc";

export interface ScaleShape {
  orders: number;
  /** Customers made in bulk (the heavy customer, registered through the service, is one more). */
  customers: number;
  sessions: number;
  /** Share of all orders that belong to the one heavy customer. */
  heavyShare: number;
  /** Share of sessions that have expired. */
  expiredShare: number;
  /** Days of history that created_at covers, ending at the load. */
  days: number;
}

/** 1,000,000 customers and 1,000,000 sessions at 10,000,000 orders, proportionally fewer below. */
export function scaleShape(orders: number, sessions?: number): ScaleShape {
  const customers = Math.max(100, Math.round(orders / 10));
  return {
    orders,
    customers,
    sessions: sessions ?? customers,
    // 25,000 orders at 10 M (past the 20,000 the issue asks for), and never fewer than twice the
    // top bulk customer's ≈ 1/√C (see loadScaleOrders), so it stays the heaviest at any N.
    heavyShare: Math.max(0.0025, 2 / Math.sqrt(customers)),
    expiredShare: 0.9,
    days: 730,
  };
}

/** A uniform number in [0, 1) from a hash of `expr` (a bigint) and a seed. */
const u = (expr: string, seed: number) =>
  `(((hashint8extended((${expr})::bigint, ${seed}) >> 11) & 9007199254740991)::float8 / 9007199254740992.0)`;

async function chunked(label: string, total: number, chunk: number, run: (lo: number, hi: number) => Promise<unknown>): Promise<number> {
  const bar = progressBar(label, total);
  for (let lo = 1; lo <= total; lo += chunk) {
    const hi = Math.min(total, lo + chunk - 1);
    await run(lo, hi);
    bar.update(hi);
  }
  return bar.finish();
}

/**
 * Customers `scale-<n>@example.com`, n = 1 … customers, all with the same real argon2id hash (no
 * one signs in as them; the column holds what the service writes). They joined over the year
 * before the orders' history begins.
 */
export async function loadScaleCustomers(sql: postgres.Sql, shape: ScaleShape, passwordHash: string, end: Date): Promise<number> {
  const statement = `${HARNESS_MARK}
    insert into users (id, email, password_hash, role, created_at, updated_at)
    select gen_random_uuid(), 'scale-' || g || '@example.com', $3, 'customer', t, t
      from generate_series($1::bigint, $2::bigint) g,
           lateral (select $4::timestamp - make_interval(days => ${shape.days}) - ${u("g", 101)} * interval '365 days' as t) x`;
  return chunked("customers", shape.customers, 100_000, (lo, hi) => sql.unsafe(statement, [lo, hi, passwordHash, dbTime(end)]));
}

/**
 * Sessions of random bulk customers, `expiredShare` of them expired in the last 30 days, the rest
 * valid for up to 7 more days; the token hash is the hex SHA-256 of a token nobody holds.
 */
export async function loadScaleSessions(sql: postgres.Sql, shape: ScaleShape, end: Date): Promise<number> {
  await mapCustomers(sql, undefined);
  const statement = `${HARNESS_MARK}
    insert into sessions (id, user_id, token_hash, expires_at, created_at)
    select gen_random_uuid(), c.id, encode(sha256(convert_to('scale-session-' || g, 'UTF8')), 'hex'), e, e - interval '7 days'
      from generate_series($1::bigint, $2::bigint) g
      cross join lateral (select
          case when ${u("g", 201)} < ${shape.expiredShare}
               then $3::timestamp - ${u("g", 202)} * interval '30 days'
               else $3::timestamp + interval '1 minute' + ${u("g", 202)} * interval '7 days' end as e,
          1 + floor(${u("g", 203)} * $4)::int as n) x
      join pg_temp.scale_customers c on c.n = x.n`;
  return chunked("sessions", shape.sessions, 100_000, (lo, hi) => sql.unsafe(statement, [lo, hi, dbTime(end), shape.customers]));
}

/** customer number → id, in a temporary table of this connection: 0 is the heavy customer. */
async function mapCustomers(sql: postgres.Sql, heavyUserId: string | undefined): Promise<void> {
  await sql.unsafe(`${HARNESS_MARK} drop table if exists pg_temp.scale_customers`);
  await sql.unsafe(
    `${HARNESS_MARK} create temp table scale_customers as
       select substring(email from '^scale-([0-9]+)@')::int as n, id from users where email like 'scale-%@example.com'`,
  );
  if (heavyUserId) await sql.unsafe(`${HARNESS_MARK} insert into pg_temp.scale_customers values (0, $1::uuid)`, [heavyUserId]);
  await sql.unsafe(`${HARNESS_MARK} alter table pg_temp.scale_customers add primary key (n)`);
  await sql.unsafe(`${HARNESS_MARK} analyze pg_temp.scale_customers`);
}

interface Definition {
  table: string;
  name: string;
  kind: "primary/unique" | "index" | "foreign key";
  def: string;
}

/**
 * The keys, indexes and foreign keys of orders and order_items (and foreign keys into them), as
 * the migrations made them: dropped for the load and rebuilt from these very definitions, which
 * is faster than maintaining random-UUID B-trees larger than shared_buffers row by row.
 */
async function orderDefinitions(sql: postgres.Sql): Promise<Definition[]> {
  const constraints = await sql.unsafe<{ table: string; name: string; contype: string; def: string }[]>(
    `${HARNESS_MARK} select conrelid::regclass::text as "table", conname as name, contype::text, pg_get_constraintdef(oid) as def
       from pg_constraint
      where contype in ('p', 'u', 'f')
        and (conrelid in ('orders'::regclass, 'order_items'::regclass)
             or (contype = 'f' and confrelid in ('orders'::regclass, 'order_items'::regclass)))
      order by conrelid::regclass::text, conname`,
  );
  const indexes = await sql.unsafe<{ table: string; name: string; def: string }[]>(
    `${HARNESS_MARK} select indrelid::regclass::text as "table", indexrelid::regclass::text as name, pg_get_indexdef(indexrelid) as def
       from pg_index i
      where indrelid in ('orders'::regclass, 'order_items'::regclass)
        and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid and c.contype in ('p', 'u', 'x'))
      order by 2`,
  );
  return [
    ...constraints.map((c) => ({
      table: c.table,
      name: c.name,
      kind: c.contype === "f" ? ("foreign key" as const) : ("primary/unique" as const),
      def: c.def,
    })),
    ...indexes.map((i) => ({ table: i.table, name: i.name, kind: "index" as const, def: i.def })),
  ];
}

const fingerprint = (defs: Definition[]) =>
  defs
    .map((d) => `${d.table} ${d.name} ${d.def}`)
    .sort()
    .join("\n");

export interface OrdersLoad {
  orders: number;
  items: number;
  insertSeconds: number;
  rebuildSeconds: number;
  vacuumSeconds: number;
  rebuilt: { name: string; seconds: number }[];
  distribution: Record<string, number | string>;
}

/**
 * `shape.orders` orders with 1–5 items each (30/25/20/15/10 %), quantities 1–3, prices taken
 * from the products and totals summed from the items (numeric, so exact to the cent). Orders
 * are inserted oldest first (created_at grows with the row number, as a live shop appends them)
 * over `days` days ending at `end`, with twice as many orders a day at the end as at the start.
 * Who ordered is skewed: `heavyShare` of the orders go to the heavy customer (number 0), the
 * rest to customer 1 + ⌊(C−1)·u²⌋, so low numbers order far more often (the top bulk customer
 * about 1/√C of them, the typical one a handful). Statuses follow age: under 2 days old
 * pending/processing/shipped/cancelled 45/30/20/5 %, under 10 days processing/shipped/
 * delivered/cancelled 10/50/35/5 %, older delivered/cancelled/pending 93.8/6/0.2 % (stuck).
 */
export async function loadScaleOrders(
  sql: postgres.Sql,
  shape: ScaleShape,
  opts: { heavyUserId: string; end: Date; chunk?: number; log: (msg: string) => void },
): Promise<OrdersLoad> {
  const { log } = opts;
  await mapCustomers(sql, opts.heavyUserId);
  await sql.unsafe(`${HARNESS_MARK} drop table if exists pg_temp.scale_products`);
  await sql.unsafe(
    `${HARNESS_MARK} create temp table scale_products as
       select (row_number() over (order by created_at, id) - 1)::int as n, id, price from products`,
  );
  await sql.unsafe(`${HARNESS_MARK} alter table pg_temp.scale_products add primary key (n)`);
  await sql.unsafe(`${HARNESS_MARK} analyze pg_temp.scale_products`);
  const [{ p }] = await sql.unsafe<{ p: number }[]>(`${HARNESS_MARK} select count(*)::int as p from pg_temp.scale_products`);
  if (p < 5) throw new Error("scale-orders needs at least 5 products");

  const before = await orderDefinitions(sql);
  log(
    `orders: dropping ${before.length} keys, indexes and foreign keys of orders/order_items for the load (rebuilt from the same definitions after)`,
  );
  for (const d of before.filter((x) => x.kind === "foreign key"))
    await sql.unsafe(`${HARNESS_MARK} alter table ${d.table} drop constraint ${quote(d.name)}`);
  for (const d of before.filter((x) => x.kind === "index")) await sql.unsafe(`${HARNESS_MARK} drop index ${d.name}`);
  for (const d of before.filter((x) => x.kind === "primary/unique"))
    await sql.unsafe(`${HARNESS_MARK} alter table ${d.table} drop constraint ${quote(d.name)}`);

  const N = shape.orders;
  const spanSeconds = shape.days * 86_400;
  // created_at: fraction of the span from the order's rank, growth 1 → 2 orders a day.
  const status = `case
      when age < 2 * 86400 then (case when us < 0.45 then 'pending' when us < 0.75 then 'processing' when us < 0.95 then 'shipped' else 'cancelled' end)
      when age < 10 * 86400 then (case when us < 0.10 then 'processing' when us < 0.60 then 'shipped' when us < 0.95 then 'delivered' else 'cancelled' end)
      else (case when us < 0.938 then 'delivered' when us < 0.998 then 'cancelled' else 'pending' end) end`;
  // One pass per chunk, no join between the CTEs (a join of two CTE scans has no index and, at
  // a chunk's size, turns quadratic): each order's lines, prices and total are computed in a
  // LATERAL subquery as arrays, the items are unnested from them.
  const statement = `${HARNESS_MARK}
    with o as materialized (
      select gen_random_uuid() as id, c.id as user_id, x.products, x.quantities, x.prices, x.total, st.status, s.created_at,
             case when st.status = 'pending' then s.created_at
                  else least($3::timestamp, s.created_at + (1 + s.uu * 9) * interval '1 day') end as updated_at
        from (select g, us, k, pbase, uu, rank,
                     $3::timestamp - (1 - frac) * ${spanSeconds} * interval '1 second' as created_at,
                     (1 - frac) * ${spanSeconds} as age
                from (select g,
                             sqrt(1 + 3 * ((g - 1 + ${u("g", 303)}) / ${N}.0)) - 1 as frac,
                             ${u("g", 304)} as us,
                             ${u("g", 308)} as uu,
                             case when ${u("g", 305)} < 0.30 then 1 when ${u("g", 305)} < 0.55 then 2 when ${u("g", 305)} < 0.75 then 3
                                  when ${u("g", 305)} < 0.90 then 4 else 5 end as k,
                             floor(${u("g", 306)} ^ 2 * ${p})::int as pbase,
                             case when ${u("g", 301)} < ${shape.heavyShare} then 0
                                  else 1 + floor(${u("g", 302)} ^ 2 * ${shape.customers - 1})::int end as rank
                        from generate_series($1::bigint, $2::bigint) g) r) s
        join pg_temp.scale_customers c on c.n = s.rank
        cross join lateral (
          select array_agg(pr.id order by j) as products, array_agg(q.quantity order by j) as quantities,
                 array_agg(pr.price order by j) as prices, sum(pr.price * q.quantity) as total
            from generate_series(1, s.k) j
            join pg_temp.scale_products pr on pr.n = (s.pbase + (j - 1) * 37) % ${p}
            cross join lateral (select case when ${u("s.g * 8 + j", 307)} < 0.7 then 1
                                            when ${u("s.g * 8 + j", 307)} < 0.9 then 2 else 3 end as quantity) q) x
        cross join lateral (select (${status})::varchar as status) st
       order by s.g
    ), items as (
      insert into order_items (id, order_id, product_id, quantity, price)
      select gen_random_uuid(), o.id, l.product_id, l.quantity, l.price
        from o cross join lateral unnest(o.products, o.quantities, o.prices) as l(product_id, quantity, price)
    )
    insert into orders (id, user_id, status, total, created_at, updated_at)
    select id, user_id, status, total, created_at, updated_at from o`;
  const chunk = opts.chunk ?? Math.max(1, Math.min(100_000, Math.ceil(N / 10)));
  const insertSeconds = await chunked("orders", N, chunk, (lo, hi) => sql.unsafe(statement, [lo, hi, dbTime(opts.end)]));

  // Rebuilt in the migrations' own definitions: keys, then indexes, then foreign keys (validated).
  const rebuilt: { name: string; seconds: number }[] = [];
  const started = performance.now();
  const order: Definition["kind"][] = ["primary/unique", "index", "foreign key"];
  const bar = progressBar("rebuilding keys and indexes", before.length);
  let done = 0;
  for (const kind of order) {
    for (const d of before.filter((x) => x.kind === kind)) {
      const t0 = performance.now();
      if (kind === "index") await sql.unsafe(`${HARNESS_MARK} ${d.def}`);
      else await sql.unsafe(`${HARNESS_MARK} alter table ${d.table} add constraint ${quote(d.name)} ${d.def}`);
      rebuilt.push({ name: d.name, seconds: Math.round((performance.now() - t0) / 100) / 10 });
      bar.update(++done);
    }
  }
  bar.finish();
  const rebuildSeconds = (performance.now() - started) / 1000;
  const after = await orderDefinitions(sql);
  if (fingerprint(after) !== fingerprint(before))
    throw new Error(`the rebuilt keys and indexes differ from the migrations':\n${fingerprint(before)}\n---\n${fingerprint(after)}`);

  // A shop's tables have been vacuumed before anyone measures them: hint bits and the visibility
  // map set now, not by the first measured statement or an autovacuum in the middle of a run.
  const v0 = performance.now();
  log("orders: vacuum analyze orders, order_items");
  await sql.unsafe(`${HARNESS_MARK} vacuum (analyze) orders`);
  await sql.unsafe(`${HARNESS_MARK} vacuum (analyze) order_items`);
  await sql.unsafe(`${HARNESS_MARK} analyze users`);
  await sql.unsafe(`${HARNESS_MARK} analyze sessions`);
  const vacuumSeconds = (performance.now() - v0) / 1000;

  const [counts] = await sql.unsafe<{ orders: string; items: string }[]>(
    `${HARNESS_MARK} select (select count(*) from orders)::text as orders, (select count(*) from order_items)::text as items`,
  );
  return {
    orders: Number(counts.orders),
    items: Number(counts.items),
    insertSeconds,
    rebuildSeconds,
    vacuumSeconds,
    rebuilt,
    distribution: await describeDistribution(sql, opts.heavyUserId),
  };
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** What the skew came out as: orders per customer, statuses, items per order, the date range. */
export async function describeDistribution(sql: postgres.Sql, heavyUserId: string): Promise<Record<string, number | string>> {
  const [per] = await sql.unsafe<Record<string, string>[]>(
    `${HARNESS_MARK} with per as (select user_id, count(*) as n from orders group by user_id)
     select (select n from per where user_id = $1::uuid)::text as heavy,
            (select max(n) from per where user_id <> $1::uuid)::text as top_other,
            percentile_disc(0.5) within group (order by n)::text as median,
            percentile_disc(0.99) within group (order by n)::text as p99,
            count(*)::text as customers_with_orders
       from per`,
    [heavyUserId],
  );
  const statuses = await sql.unsafe<{ status: string; n: string }[]>(
    `${HARNESS_MARK} select status, count(*)::text as n from orders group by status order by status`,
  );
  // Totals against their items: every order up to a million, a 1 % block sample beyond.
  const [{ n }] = await sql.unsafe<{ n: string }[]>(
    `${HARNESS_MARK} select reltuples::bigint::text as n from pg_class where oid = 'orders'::regclass`,
  );
  const sample = Number(n) > 1_000_000 ? "tablesample system (1)" : "";
  const [span] = await sql.unsafe<{ oldest: string; newest: string; checked: string; inconsistent: string }[]>(
    `${HARNESS_MARK} select (select min(created_at) from orders)::text as oldest, (select max(created_at) from orders)::text as newest,
            count(*)::text as checked,
            count(*) filter (where o.total is distinct from (select sum(i.price * i.quantity) from order_items i where i.order_id = o.id))::text as inconsistent
       from orders o ${sample}`,
  );
  const total = statuses.reduce((n, s) => n + Number(s.n), 0);
  return {
    heavyCustomerOrders: Number(per.heavy),
    topOtherCustomerOrders: Number(per.top_other),
    medianOrdersPerCustomer: Number(per.median),
    p99OrdersPerCustomer: Number(per.p99),
    customersWithOrders: Number(per.customers_with_orders),
    ...Object.fromEntries(statuses.map((s) => [`status_${s.status}_pct`, Math.round((Number(s.n) / total) * 10000) / 100])),
    oldest: span.oldest,
    newest: span.newest,
    ordersCheckedAgainstItems: Number(span.checked),
    ordersWhoseTotalDiffersFromItems: Number(span.inconsistent),
  };
}

/** A timestamp as the schema stores it: UTC, without a zone. */
export const dbTime = (d: Date) => d.toISOString().replace("T", " ").replace("Z", "");
