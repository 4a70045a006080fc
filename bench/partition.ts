// The partitioning rehearsal: `npm run bench:partition -- [--orders=2000000] [--customers=50000]
// [--samples=200] [--keep]`. On a fresh database (its own Postgres 15 + PgBouncer from .ci/pg.sh,
// or BENCH_DATABASE_URL / BENCH_DIRECT_DATABASE_URL) it loads N orders over two years with set-based
// SQL (skewed customers, 1–5 items, realistic statuses, 10 % with an idempotency key), samples
// orders.create / orders.list / orders.byId through the service functions (sequentially, through
// the pooler as deployed), runs `partition-orders` while a second client keeps placing and
// listing orders, and samples again. Prints a Markdown report: each step's duration and lock,
// how long the swap held ACCESS EXCLUSIVE, what the shop saw meanwhile, and before/after timings.
import postgres from "postgres";
import { createPostgresDatabase } from "../src/db/client";
import { runMigrations } from "../src/db/migrate";
import { defaultOptions, partitionOrders } from "../src/db/partition-orders";
import { createOrder, getOrder, listOrders } from "../src/services/orders";
import { diffStatements, enableStatementStats, openBenchDatabase, snapshotStatements } from "./lib/postgres";
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
const log = (msg: string) => process.stderr.write(`${msg}\n`);

const bench = await openBenchDatabase(log);
const direct = postgres(bench.directUrl, { max: 1, prepare: false, onnotice: () => {} });
const out: string[] = [];
const say = (line = "") => {
  out.push(line);
};

try {
  const migrator = await createPostgresDatabase({ url: bench.directUrl, poolMax: 1, prepare: false });
  await runMigrations(migrator.db);
  await migrator.close();
  await direct.unsafe("set statement_timeout = 0");
  const statementsOn = await enableStatementStats(direct);

  // --- data, set-based: ids derived from a number so orders can pick skewed customers in SQL
  const loadStarted = performance.now();
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
        select o.id, md5('bench-product-' || ((abs(hashtext(o.id::text)) + k * 37) % ${PRODUCTS} + 1))::uuid, 1 + k % 3, 9.99
          from o cross join lateral generate_series(1, 1 + abs(hashtext(o.id::text || 'n')) % 5) k)
      insert into order_idempotency_keys (user_id, key, request_hash, order_id, created_at)
      select user_id, 'bulk-' || id, repeat('0', 64), id, created_at from o where abs(hashtext(id::text)) % 10 = 0`);
    bar.update(b);
  }
  bar.finish();
  log("vacuum analyze");
  for (const t of ["users", "products", "orders", "order_items", "order_idempotency_keys"]) await direct.unsafe(`vacuum analyze ${t}`);
  const loadSeconds = (performance.now() - loadStarted) / 1000;
  const [counts] = await direct.unsafe<{ orders: number; items: number; keys: number; heavy: string; heavy_n: number; db: string }[]>(
    `select (select count(*) from orders)::int as orders, (select count(*) from order_items)::int as items,
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

  // --- the sampler: the service's functions on the pooled URL, as deployed behind PgBouncer 1.18
  const service = await createPostgresDatabase({ url: bench.pooledUrl, poolMax: 4, prepare: bench.pooledUrl === bench.directUrl });
  const db = service.db;
  const [{ id: samplerId }] = await direct.unsafe<{ id: string }[]>(
    "insert into users (email, password_hash) values ('sampler@example.com', 'not a hash') returning id::text as id",
  );
  const sampler = { id: samplerId, role: "customer" as const };
  const heavy = { id: counts.heavy, role: "customer" as const };
  const admin = { id: samplerId, role: "admin" as const };
  const items = [
    { productId: md5uuid("bench-product-1"), quantity: 1 },
    { productId: md5uuid("bench-product-2"), quantity: 1 },
  ];
  let cursor20: string | null = null;
  for (let p = 0; p < 19; p++) cursor20 = (await listOrders(db, heavy, { limit: 20, cursor: cursor20 })).nextCursor;
  const [{ old }] = await direct.unsafe<{ old: string }[]>("select id::text as old from orders order by created_at limit 1 offset 1000");
  const ops: Record<string, () => Promise<unknown>> = {
    "orders.create (2 lines)": () => createOrder(db, sampler, { items }),
    "orders.list heavy customer, page 1": () => listOrders(db, heavy, { limit: 20 }),
    "orders.list heavy customer, page 20": () => listOrders(db, heavy, { limit: 20, cursor: cursor20 }),
    "orders.list admin, page 1": () => listOrders(db, admin, { limit: 20 }),
    "orders.list admin status=pending": () => listOrders(db, admin, { limit: 20, status: "pending" }),
    "orders.byId (a two-year-old order)": () => getOrder(db, admin, old),
  };
  async function sample(label: string) {
    for (const op of Object.values(ops)) await op(); // warm: plans, connections
    const before = statementsOn ? await snapshotStatements(direct) : undefined;
    const times: Record<string, number[]> = Object.fromEntries(Object.keys(ops).map((k) => [k, []]));
    const bar = progressBar(`samples ${label}`, SAMPLES);
    for (let i = 0; i < SAMPLES; i++) {
      for (const [name, op] of Object.entries(ops)) {
        const t0 = performance.now();
        await op();
        times[name].push(performance.now() - t0);
      }
      bar.update(i + 1);
    }
    bar.finish();
    const inside = before ? diffStatements(before, await snapshotStatements(direct)) : [];
    return { times, inside };
  }

  const before = await sample("before");
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

  const after = await sample("after");
  const sizesAfter = await sizes();
  const [{ db: dbAfter }] = await direct.unsafe<{ db: string }[]>("select pg_size_pretty(pg_database_size(current_database())) as db");
  await service.close();

  // --- the report
  say(`# Partitioning rehearsal: ${ORDERS.toLocaleString("en")} orders over two years`);
  say();
  say(`Command: \`npm run bench:partition${ORDERS !== 2_000_000 ? ` -- --orders=${ORDERS}` : ""}\``);
  say(
    `(own Postgres 15 + PgBouncer from .ci/pg.sh unless BENCH_DATABASE_URL/BENCH_DIRECT_DATABASE_URL are set; this run: ${bench.ownServer ? "own server" : "given server"})`,
  );
  say();
  say(
    `Data: ${counts.orders.toLocaleString("en")} orders, ${counts.items.toLocaleString("en")} items, ${counts.keys.toLocaleString("en")} idempotency keys, ${CUSTOMERS.toLocaleString("en")} customers (the heaviest has ${counts.heavy_n.toLocaleString("en")} orders); loaded with set-based SQL in ${loadSeconds.toFixed(0)} s; database ${counts.db} before, ${dbAfter} after.`,
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
  say(`## Service timings before and after (${SAMPLES} sequential samples each, milliseconds)`);
  say();
  say("| operation | before p50 | after p50 | before p95 | after p95 | after/before (p50) |");
  say("|---|---:|---:|---:|---:|---:|");
  for (const name of Object.keys(ops)) {
    const b = before.times[name];
    const a = after.times[name];
    say(
      `| ${name} | ${fmt(pct(b, 50))} | ${fmt(pct(a, 50))} | ${fmt(pct(b, 95))} | ${fmt(pct(a, 95))} | ${(pct(a, 50) / pct(b, 50)).toFixed(2)} |`,
    );
  }
  if (statementsOn) {
    say();
    say("Inside Postgres (pg_stat_statements mean execution time per call, ms), the statements of the samples:");
    say();
    say("| statement | before | after |");
    say("|---|---:|---:|");
    const key = (q: string) => q.replace(/\$\d+/g, "$");
    // The statement's head and, for the list's variants, its WHERE clause.
    const label = (q: string) => {
      const where = /from "orders" (where .*?) order by/.exec(q)?.[1];
      return `${q.slice(0, 60)}…${where ? ` ${where.slice(0, 80)}` : ""}`.replace(/\|/g, "\\|");
    };
    const afterBy = new Map(after.inside.map((d) => [key(d.query), d]));
    for (const d of before.inside.filter((x) => x.calls >= SAMPLES / 2 && !/^(begin|commit)/i.test(x.query))) {
      const a = afterBy.get(key(d.query));
      say(`| \`${label(key(d.query))}\` | ${d.meanMs.toFixed(3)} | ${a ? a.meanMs.toFixed(3) : "–"} |`);
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
  if (keep) log(`kept database ${bench.name} at ${bench.directUrl}`);
  else await bench.teardown();
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
