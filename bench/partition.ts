// The partitioning rehearsal: `npm run bench:partition -- [--orders=2000000] [--customers=50000]
// [--samples=200] [--keep]`. On a fresh database (its own Postgres 15 + PgBouncer from .ci/pg.sh,
// or BENCH_DATABASE_URL / BENCH_DIRECT_DATABASE_URL) it loads N orders over two years with set-based
// SQL (skewed customers, 1–5 items, realistic statuses, 10 % with an idempotency key), samples
// orders.create / orders.list / orders.byId through the service functions (sequentially, through
// the pooler as deployed), runs `partition-orders` while a second client keeps placing and
// listing orders, then samples the partitioned database interleaved with an untouched copy. Prints a Markdown report: each step's duration and lock,
// how long the swap held ACCESS EXCLUSIVE, what the shop saw meanwhile, and before/after timings.
import postgres from "postgres";
import { createPostgresDatabase } from "../src/db/client";
import { runMigrations } from "../src/db/migrate";
import { defaultOptions, partitionOrders } from "../src/db/partition-orders";
import { createOrder, getOrder, listOrders } from "../src/services/orders";
import { enableStatementStats, openBenchDatabase } from "./lib/postgres";
import { progressBar } from "./lib/proc";

function arg(name: string, fallback: number): number {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  const n = hit ? Number(hit.split("=")[1]) : fallback;
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
}
const ORDERS = arg("orders", 2_000_000);
const CUSTOMERS = arg("customers", 50_000);
const SAMPLES = arg("samples", 200);
const PRODUCTS = 1000;
const CHUNK = 100_000;
const keep = process.argv.includes("--keep");
// --database=NAME: rehearse on an existing, loaded database of the server BENCH_DIRECT_DATABASE_URL
// names (the scale-orders bench's N-order database) instead of loading one; it is partitioned in
// place and left so, and the copy made for the "before" side is dropped at the end.
const existing = process.argv.find((a) => a.startsWith("--database="))?.split("=")[1];
if (existing !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(existing))
  throw new Error("--database must be a plain lower-case database name");
const log = (msg: string) => process.stderr.write(`${msg}\n`);

const withDb = (url: string, name: string) => {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
};
const bench = existing ? await givenDatabase(existing) : await openBenchDatabase(log);
let direct = postgres(bench.directUrl, { max: 1, prepare: false, onnotice: () => {} });
// A copy of the loaded database that stays in the design's shape: the "before" side, sampled
// interleaved with the partitioned database in the same minutes, so load swings on a shared
// machine hit both sides alike.
const plainName = `${bench.name}_plain`;
let plainCreated = false;
const out: string[] = [];
const say = (line = "") => {
  out.push(line);
};

try {
  if (!existing) {
    const migrator = await createPostgresDatabase({ url: bench.directUrl, poolMax: 1, prepare: false });
    await runMigrations(migrator.db);
    await migrator.close();
  }
  await direct.unsafe("set statement_timeout = 0");
  const statementsOn = await enableStatementStats(direct);

  // --- data, set-based: ids derived from a number so orders can pick skewed customers in SQL
  const loadStarted = performance.now();
  if (!existing) await loadData();
  async function loadData() {
    await direct.unsafe(
      `insert into users (id, email, password_hash, role)
     select md5('bench-user-' || g)::uuid, 'bulk-' || g || '@example.com', 'not a hash', 'customer' from generate_series(1, ${CUSTOMERS}) g`,
    );
    await direct.unsafe(
      `insert into products (id, name, price, stock)
     select md5('bench-product-' || g)::uuid, 'product ' || g, 1 + (g % 50), 1000000000 from generate_series(1, ${PRODUCTS}) g`,
    );
    const [{ start }] = await direct.unsafe<{ start: string }[]>(
      "select to_char((now() at time zone 'utc') - interval '2 years', 'YYYY-MM-DD HH24:MI:SS') as start",
    );
    const span = 2 * 365 * 86_400 - 3600;
    // Bulk-load speed: no per-row foreign-key triggers (the data is consistent by construction) and
    // the secondary indexes built once at the end instead of row by row.
    const secondary = await direct.unsafe<{ name: string; def: string }[]>(
      `select c.relname as name, pg_get_indexdef(i.indexrelid) as def from pg_index i join pg_class c on c.oid = i.indexrelid
      where i.indrelid in ('orders'::regclass, 'order_items'::regclass) and not i.indisprimary and not i.indisunique`,
    );
    for (const i of secondary) await direct.unsafe(`drop index ${i.name}`);
    await direct.unsafe("set session_replication_role = replica");
    const bar = progressBar("orders", ORDERS);
    for (let a = 0; a < ORDERS; a += CHUNK) {
      const b = Math.min(ORDERS, a + CHUNK);
      // created_at grows with g (plus jitter within a slot): the heap is in time order, as a real
      // shop's is; customers follow random()^3, so customer 1 holds a few percent of all orders.
      await direct.unsafe(`
      with s as (
        select g, random() as r, '${start}'::timestamp + (${span}::float8 * (g + random()) / ${ORDERS}) * interval '1 second' as ts
          from generate_series(${a}, ${b - 1}) g),
      o as (
        insert into orders (id, user_id, status, total, created_at, updated_at)
        select gen_random_uuid(), md5('bench-user-' || (1 + floor(${CUSTOMERS} * power(random(), 3)))::int)::uuid,
               case when r < 0.05 then 'pending' when r < 0.10 then 'processing' when r < 0.20 then 'shipped'
                    when r < 0.90 then 'delivered' else 'cancelled' end,
               round((5 + random() * 200)::numeric, 2), ts, ts + r * interval '2 days'
          from s
        returning id, user_id, created_at),
      i as (
        insert into order_items (order_id, product_id, quantity, price)
        select o.id, md5('bench-product-' || ((abs(hashtext(o.id::text)::bigint) + k * 37) % ${PRODUCTS} + 1))::uuid, 1 + k % 3, 9.99
          from o cross join lateral generate_series(1, 1 + abs(hashtext(o.id::text || 'n')::bigint) % 5) k)
      insert into order_idempotency_keys (user_id, key, request_hash, order_id, created_at)
      select user_id, 'bulk-' || id, repeat('0', 64), id, created_at from o where abs(hashtext(id::text)::bigint) % 10 = 0`);
      bar.update(b);
    }
    bar.finish();
    await direct.unsafe("set session_replication_role = origin");
    log("indexes");
    for (const i of secondary) await direct.unsafe(i.def);
    log("vacuum analyze");
    for (const t of ["users", "products", "orders", "order_items", "order_idempotency_keys"]) await direct.unsafe(`vacuum analyze ${t}`);
  }
  const loadSeconds = (performance.now() - loadStarted) / 1000;
  const [counts] = await direct.unsafe<
    { orders: number; items: number; keys: number; customers: number; heavy: string; heavy_n: number; db: string }[]
  >(
    `select (select count(*) from orders)::int as orders, (select count(*) from users)::int as customers, (select count(*) from order_items)::int as items,
            (select count(*) from order_idempotency_keys)::int as keys,
            (select user_id::text from orders group by user_id order by count(*) desc limit 1) as heavy,
            (select count(*) from orders group by user_id order by count(*) desc limit 1)::int as heavy_n,
            pg_size_pretty(pg_database_size(current_database())) as db`,
  );
  const sizes = async () =>
    direct.unsafe<{ name: string; size: string }[]>(
      `select t as name, pg_size_pretty(coalesce((select sum(pg_total_relation_size(relid)) from pg_partition_tree(to_regclass(t))),
                                           pg_total_relation_size(to_regclass(t)), 0)::bigint) as size
         from unnest(array['orders', 'order_items', 'order_idempotency_keys', 'order_ids']) t`,
    );
  const sizesBefore = await sizes();
  const [{ id: samplerId }] = await direct.unsafe<{ id: string }[]>(
    `insert into users (email, password_hash) values ('sampler-${Date.now()}@example.com', 'not a hash') returning id::text as id`,
  );
  const [{ old }] = await direct.unsafe<{ old: string }[]>("select id::text as old from orders order by created_at limit 1 offset 1000");
  log(`copying the database to ${plainName}`);
  const cloneStarted = performance.now();
  await direct.end({ timeout: 5 });
  const server = postgres(withDb(bench.directUrl, "postgres"), { max: 1, prepare: false, onnotice: () => {} });
  // A template must have no other session: the pooler's idle server connections (a database
  // that served the service before, as the scale-orders one did) are closed first.
  await server.unsafe("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()", [
    bench.name,
  ]);
  await server.unsafe(`create database ${plainName} template ${bench.name}`);
  plainCreated = true;
  await server.end({ timeout: 5 });
  const cloneSeconds = (performance.now() - cloneStarted) / 1000;
  // Planning time too: unnamed statements (PgBouncer 1.18, DATABASE_PREPARE=false) are planned on
  // every call, and a partitioned table costs more to plan than it costs to run.
  const server2 = postgres(withDb(bench.directUrl, "postgres"), { max: 1, prepare: false, onnotice: () => {} });
  for (const d of [bench.name, plainName]) await server2.unsafe(`alter database ${d} set pg_stat_statements.track_planning = on`);
  await server2.end({ timeout: 5 });
  direct = postgres(bench.directUrl, { max: 1, prepare: false, onnotice: () => {} });
  await direct.unsafe("set statement_timeout = 0");
  const directPlain = postgres(withDb(bench.directUrl, plainName), { max: 1, prepare: false, onnotice: () => {} });

  // --- the sampler: the service's functions on the pooled URL, as deployed behind PgBouncer 1.18
  const prepare = bench.pooledUrl === bench.directUrl;
  const service = await createPostgresDatabase({ url: bench.pooledUrl, poolMax: 4, prepare });
  const servicePlain = await createPostgresDatabase({ url: withDb(bench.pooledUrl, plainName), poolMax: 4, prepare });
  const db = service.db;
  const sampler = { id: samplerId, role: "customer" as const };
  const heavy = { id: counts.heavy, role: "customer" as const };
  const admin = { id: samplerId, role: "admin" as const };
  const items = existing
    ? (await direct.unsafe<{ id: string }[]>("select id::text as id from products where stock > 1000000 order by id limit 2")).map((p) => ({
        productId: p.id,
        quantity: 1,
      }))
    : [
        { productId: md5uuid("bench-product-1"), quantity: 1 },
        { productId: md5uuid("bench-product-2"), quantity: 1 },
      ];
  if (items.length < 2) throw new Error("the database needs two products with more than 1,000,000 in stock for the sampler's orders");
  // Same data on both sides (a copy), so the same customer, cursor and order id.
  let cursor20: string | null = null;
  for (let p = 0; p < 19; p++) cursor20 = (await listOrders(db, heavy, { limit: 20, cursor: cursor20 })).nextCursor;
  const opsFor = (on: typeof db): Record<string, () => Promise<unknown>> => ({
    "orders.create (2 lines)": () => createOrder(on, sampler, { items }),
    "orders.list heavy customer, page 1": () => listOrders(on, heavy, { limit: 20 }),
    "orders.list heavy customer, page 20": () => listOrders(on, heavy, { limit: 20, cursor: cursor20 }),
    "orders.list admin, page 1": () => listOrders(on, admin, { limit: 20 }),
    "orders.list admin status=pending": () => listOrders(on, admin, { limit: 20, status: "pending" }),
    "orders.byId (a two-year-old order)": () => getOrder(on, admin, old),
  });
  const sides = { plain: opsFor(servicePlain.db), partitioned: opsFor(db) };
  const names = Object.keys(sides.plain);
  /** Both sides, interleaved op by op, the side that goes first alternating every round. */
  async function compare() {
    for (let w = 0; w < 20; w++) for (const side of Object.values(sides)) for (const op of Object.values(side)) await op();
    const snaps = statementsOn ? [await snapshotStatements(directPlain), await snapshotStatements(direct)] : undefined;
    const times = { plain: new Map<string, number[]>(), partitioned: new Map<string, number[]>() };
    const bar = progressBar("samples", SAMPLES);
    for (let i = 0; i < SAMPLES; i++) {
      for (const name of names) {
        for (const side of (i % 2 === 0 ? ["plain", "partitioned"] : ["partitioned", "plain"]) as (keyof typeof sides)[]) {
          const t0 = performance.now();
          await sides[side][name]();
          const list = times[side].get(name) ?? [];
          list.push(performance.now() - t0);
          times[side].set(name, list);
        }
      }
      bar.update(i + 1);
    }
    bar.finish();
    const inside = snaps
      ? {
          plain: diffStats(snaps[0], await snapshotStatements(directPlain)),
          partitioned: diffStats(snaps[1], await snapshotStatements(direct)),
        }
      : undefined;
    return { times, inside };
  }

  const plan = (await partitionOrders(bench.directUrl, { ...defaultOptions, dryRun: true, log })).plan;

  // --- the migration, with the shop still placing and listing orders
  const seen: { at: number; ms: number; op: string; error?: string }[] = [];
  let running = true;
  const t0 = performance.now();
  const shop = (async () => {
    while (running) {
      for (const [op, run] of [
        ["create", () => createOrder(db, sampler, { items })],
        ["list", () => listOrders(db, heavy, { limit: 20 })],
      ] as const) {
        const s = performance.now();
        try {
          await run();
          seen.push({ at: s - t0, ms: performance.now() - s, op });
        } catch (error) {
          seen.push({ at: s - t0, ms: performance.now() - s, op, error: (error as Error).message.slice(0, 120) });
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const marks: { at: number; line: string }[] = [];
  const report = await partitionOrders(bench.directUrl, {
    ...defaultOptions,
    dryRun: false,
    log: (line) => {
      marks.push({ at: performance.now() - t0, line });
      log(line);
    },
  });
  running = false;
  await shop;
  const swapStart = marks.find((m) => /^\s*\d+\. swap:/.test(m.line))?.at ?? 0;
  const swapEnd = marks.find((m) => m.at > swapStart && m.line.includes("done in"))?.at ?? 0;
  const near = seen.filter((s) => s.at + s.ms >= swapStart - 50 && s.at <= swapEnd + 50);

  await direct.unsafe("vacuum analyze order_ids");
  const measured = await compare();
  const sizesAfter = await sizes();
  const [{ db: dbAfter }] = await direct.unsafe<{ db: string }[]>("select pg_size_pretty(pg_database_size(current_database())) as db");
  await Promise.all([service.close(), servicePlain.close(), directPlain.end({ timeout: 5 })]);

  // --- the report
  say(
    existing
      ? `# Partitioning rehearsal: ${counts.orders.toLocaleString("en")} orders (the database ${existing})`
      : `# Partitioning rehearsal: ${ORDERS.toLocaleString("en")} orders over two years`,
  );
  say();
  say(
    `Command: \`npm run bench:partition${existing ? ` -- --database=${existing}` : ORDERS !== 2_000_000 ? ` -- --orders=${ORDERS}` : ""}\``,
  );
  say(
    `(own Postgres 15 + PgBouncer from .ci/pg.sh unless BENCH_DATABASE_URL/BENCH_DIRECT_DATABASE_URL are set; this run: ${bench.ownServer ? "own server" : "given server"})`,
  );
  say();
  say(
    `Data: ${counts.orders.toLocaleString("en")} orders, ${counts.items.toLocaleString("en")} items, ${counts.keys.toLocaleString("en")} idempotency keys, ${existing ? `${counts.customers.toLocaleString("en")} users` : `${CUSTOMERS.toLocaleString("en")} customers`} (the heaviest has ${counts.heavy_n.toLocaleString("en")} orders); ${existing ? `the existing database ${existing} (its own data, loaded before)` : `loaded with set-based SQL in ${loadSeconds.toFixed(0)} s`}; database ${counts.db} before, ${dbAfter} after.`,
  );
  say(
    `Sizes before: ${sizesBefore.map((s) => `${s.name} ${s.size}`).join(", ")}. After: ${sizesAfter.map((s) => `${s.name} ${s.size}`).join(", ")}.`,
  );
  say();
  say(`## The run: ${(report.totalMs / 1000).toFixed(1)} s in all`);
  say();
  say("| # | step | duration | lock |");
  say("|---|---|---:|---|");
  report.steps.forEach((s, i) => {
    const d = s.details
      ? ` (${Object.entries(s.details)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ")})`
      : "";
    say(`| ${i + 1} | ${s.title.replace(/\|/g, "\\|")}${d} | ${fmtMs(s.ms)} | ${s.lock.replace(/\|/g, "\\|")} |`);
  });
  const swap = report.steps.find((s) => s.title.startsWith("swap"));
  say();
  say(
    `The swap's ACCESS EXCLUSIVE on orders (and order_items, order_idempotency_keys) was held **${swap?.details?.lockHeldMs} ms** (from LOCK granted to COMMIT), after waiting ${swap?.details?.lockWaitMs} ms for it; ${swap?.details?.attempts} attempt(s).`,
  );
  const errors = seen.filter((s) => s.error);
  const lat = seen.filter((s) => !s.error).map((s) => s.ms);
  say();
  say(
    `What the shop saw meanwhile (one client placing and listing orders, 20 ms apart, through PgBouncer): ${seen.length} requests, **${errors.length} errors**${errors.length ? ` (${[...new Set(errors.map((e) => e.error))].join("; ")})` : ""}; p50 ${fmtMs(pct(lat, 50))}, p99 ${fmtMs(pct(lat, 99))}, max ${fmtMs(Math.max(0, ...lat))}; around the swap: ${near.length} requests, max ${fmtMs(Math.max(0, ...near.map((s) => s.ms)))}.`,
  );
  say();
  say(`## Service timings: the design's shape against the partitioned one (${SAMPLES} samples each, interleaved; milliseconds)`);
  say();
  say(
    `"plain" is a copy of the loaded database made before the run (\`CREATE DATABASE … TEMPLATE\`, ${cloneSeconds.toFixed(0)} s), left in the design's shape; both are sampled in the same minutes through PgBouncer, op by op, alternating which goes first. The creates add orders on both sides alike.`,
  );
  say();
  say("| operation | plain p50 | partitioned p50 | plain p95 | partitioned p95 | partitioned/plain (p50) |");
  say("|---|---:|---:|---:|---:|---:|");
  for (const name of names) {
    const b = measured.times.plain.get(name)!;
    const a = measured.times.partitioned.get(name)!;
    say(
      `| ${name} | ${fmt(pct(b, 50))} | ${fmt(pct(a, 50))} | ${fmt(pct(b, 95))} | ${fmt(pct(a, 95))} | ${(pct(a, 50) / pct(b, 50)).toFixed(2)} |`,
    );
  }
  if (measured.inside) {
    say();
    say("Inside Postgres (pg_stat_statements, mean per call, ms: planning + execution; an INSERT's execution includes its triggers):");
    say();
    say("| statement | plain plan + exec | partitioned plan + exec | ratio (total) |");
    say("|---|---:|---:|---:|");
    const key = (q: string) => q.replace(/\$\d+/g, "$");
    // The statement's head and, for the list's variants, its WHERE clause.
    const label = (q: string) => {
      const where = /from "orders" (where .*?) order by/.exec(q)?.[1];
      return `${q.slice(0, 60)}…${where ? ` ${where.slice(0, 80)}` : ""}`.replace(/\|/g, "\\|");
    };
    const partitionedBy = new Map(measured.inside.partitioned.map((d) => [key(d.query), d]));
    for (const d of measured.inside.plain.filter((x) => x.calls >= SAMPLES / 2 && !/^(begin|commit|set )/i.test(x.query))) {
      const a = partitionedBy.get(key(d.query));
      const cell = (x: StatDelta) => `${x.planMs.toFixed(3)} + ${x.execMs.toFixed(3)}`;
      say(
        `| \`${label(key(d.query))}\` | ${cell(d)} | ${a ? cell(a) : "–"} | ${a ? ((a.planMs + a.execMs) / (d.planMs + d.execMs)).toFixed(2) : "–"} |`,
      );
    }
  }
  say();
  say("## The plan as `npm run partition-orders -- --dry-run` printed it");
  say();
  say("```");
  say(plan);
  say("```");
  console.log(out.join("\n"));
} finally {
  await direct.end({ timeout: 5 });
  if (keep) log(`kept databases ${bench.name} and ${plainName} at ${bench.directUrl}`);
  else {
    if (plainCreated) {
      const server = postgres(withDb(bench.directUrl, "postgres"), { max: 1, prepare: false, onnotice: () => {} });
      await server.unsafe(`drop database if exists ${plainName} with (force)`).catch(() => {});
      await server.end({ timeout: 5 });
    }
    await bench.teardown();
  }
}

/** The loaded database `name` on the server BENCH_DIRECT_DATABASE_URL / BENCH_DATABASE_URL name. */
async function givenDatabase(name: string) {
  const pooled = process.env.BENCH_DATABASE_URL;
  const direct = process.env.BENCH_DIRECT_DATABASE_URL ?? pooled;
  if (!pooled || !direct) throw new Error("--database needs BENCH_DATABASE_URL (through the pooler) and BENCH_DIRECT_DATABASE_URL");
  return { name, pooledUrl: withDb(pooled, name), directUrl: withDb(direct, name), ownServer: false, teardown: async () => {} };
}

type Snapshot = Map<string, { calls: number; plan: number; exec: number; query: string }>;
interface StatDelta {
  query: string;
  calls: number;
  planMs: number;
  execMs: number;
}
async function snapshotStatements(on: postgres.Sql): Promise<Snapshot> {
  const rows = await on.unsafe<{ id: string; calls: string; plan: string; exec: string; query: string }[]>(
    `select queryid::text as id, sum(calls)::text as calls, sum(total_plan_time)::text as plan, sum(total_exec_time)::text as exec, min(query) as query
       from pg_stat_statements s join pg_database d on d.oid = s.dbid
      where d.datname = current_database() and query not like '%pg_stat_statements%' group by queryid`,
  );
  return new Map(rows.map((r) => [r.id, { calls: Number(r.calls), plan: Number(r.plan), exec: Number(r.exec), query: r.query }]));
}
function diffStats(before: Snapshot, after: Snapshot): StatDelta[] {
  const out: StatDelta[] = [];
  for (const [id, a] of after) {
    const b = before.get(id);
    const calls = a.calls - (b?.calls ?? 0);
    if (calls > 0) {
      out.push({
        query: a.query.replace(/\s+/g, " ").trim(),
        calls,
        planMs: (a.plan - (b?.plan ?? 0)) / calls,
        execMs: (a.exec - (b?.exec ?? 0)) / calls,
      });
    }
  }
  return out.sort((x, y) => y.calls - x.calls);
}
function fmt(ms: number): string {
  return ms.toFixed(2);
}
function fmtMs(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(1)} ms`;
}
function md5uuid(text: string): string {
  const h = new Bun.CryptoHasher("md5").update(text).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
function pct(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
