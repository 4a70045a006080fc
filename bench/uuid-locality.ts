// What the order's ids cost inside Postgres as the tables grow: random UUID v4 against time-ordered
// v7 (src/lib/uuidv7.ts), on an empty database and after loading N orders with v4 ids, with
// shared_buffers small next to the indexes (as at 10 M orders on a bigger server).
//
//   npm run bench:uuid -- [--orders=3000000] [--per-phase=20000] [--rounds=2] [--shared-buffers=128MB]
//
// Each phase: CHECKPOINT, then `--per-phase` orders.create transactions on 4 connections, made of
// the service's own statements (bench/baseline-sql.ts: three guarded stock decrements pipelined,
// then the order and its items pipelined), with the order's and items' ids v4 or v7. Reported per
// order: WAL bytes (pg_current_wal_lsn difference, and split by relation with pg_walinspect), full
// page images, shared buffers dirtied and read, Postgres execution time (pg_stat_statements), and
// index bytes added. Phases start right after a checkpoint, so each leaf page an order touches for
// the first time costs a full-page image: the phase is one checkpoint cycle of `--per-phase` orders.
// The write-up is bench/results/2026-12-02-uuidv7.md; every figure also goes to stdout as markdown.
import { writeFileSync } from "node:fs";
import postgres from "postgres";
import { createPostgresDatabase } from "../src/db/client";
import { runMigrations } from "../src/db/migrate";
import { uuidv7 } from "../src/lib/uuidv7";
import { ORDER_INSERT, ORDER_TAKE_STOCK, orderItemsInsert } from "./baseline-sql";
import { startCluster } from "./lib/cluster";
import { progressBar } from "./lib/proc";

const args = new Map(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, "").split("=");
    return [k, v ?? "true"] as const;
  }),
);
const ORDERS = Number(args.get("orders") ?? 3_000_000);
const PER_PHASE = Number(args.get("per-phase") ?? 20_000);
const ROUNDS = Number(args.get("rounds") ?? 2);
const SHARED_BUFFERS = args.get("shared-buffers") ?? "128MB";
const USERS = Number(args.get("users") ?? 300_000);
const PRODUCTS = 1_000;
const CONNECTIONS = 4;
const LINES = 3;
const smoke = args.has("smoke");

const log = (msg: string) => process.stderr.write(`${msg}\n`);

type IdKind = "v4" | "v7";
const newId: Record<IdKind, () => string> = { v4: () => crypto.randomUUID(), v7: uuidv7 };

interface PhaseResult {
  size: string;
  ids: IdKind;
  walCompression: string;
  orders: number;
  seconds: number;
  walBytesPerOrder: number;
  fpiPerOrder: number;
  dirtiedPerOrder: number;
  readPerOrder: number;
  insertMsPerOrder: number;
  txMsPerOrder: number;
  walByRelation: { rel: string; bytesPerOrder: number; fpiPerOrder: number }[];
  indexBytesPerOrder: Record<string, number>;
}

async function main() {
  const settings: Record<string, string> = {
    shared_buffers: SHARED_BUFFERS,
    // No checkpoint may fall inside a phase: each phase starts with its own CHECKPOINT.
    max_wal_size: "16GB",
    checkpoint_timeout: "1h",
    // Autovacuum stays on (as in production); its WAL is in the LSN difference, not in the
    // statements' own figures.
  };
  const cluster = await startCluster(settings, log);
  const cleanup = () => cluster.down();
  process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));
  try {
    const sql = postgres(cluster.directUrl, { max: CONNECTIONS + 1, prepare: false, onnotice: () => {} });
    const handle = await createPostgresDatabase({ url: cluster.directUrl, poolMax: 2, prepare: false });
    await runMigrations(handle.db);
    await handle.close();
    await sql.unsafe("create extension if not exists pg_stat_statements");
    await sql.unsafe("create extension if not exists pg_walinspect");
    const [{ version, sb }] = await sql.unsafe<{ version: string; sb: string }[]>(
      "select version() as version, current_setting('shared_buffers') as sb",
    );
    log(`${version}; shared_buffers ${sb}`);

    // Customers and products, set-based (a password hash nobody logs in with).
    const users = smoke ? 1_000 : USERS;
    await sql.unsafe(`insert into users (email, password_hash, created_at, updated_at)
      select 'u' || g || '@example.com', 'x', now(), now() from generate_series(1, ${users}) g`);
    await sql.unsafe(`insert into products (name, price, stock, created_at, updated_at)
      select 'p' || g, (1 + g % 100)::numeric(10,2), 1000000000, now(), now() from generate_series(1, ${PRODUCTS}) g`);
    await sql.unsafe("create table bench_users as select row_number() over () as n, id from users");
    await sql.unsafe("create unique index on bench_users (n)");
    await sql.unsafe("create table bench_products as select row_number() over (order by id) as n, id, price from products");
    await sql.unsafe("create unique index on bench_products (n)");
    const userIds = (await sql.unsafe<{ id: string }[]>("select id from bench_users order by n")).map((r) => r.id);
    const products = await sql.unsafe<{ id: string; price: string }[]>("select id, price::text from bench_products order by n");
    await sql.unsafe("vacuum analyze");

    const results: PhaseResult[] = [];
    const perPhase = smoke ? 500 : PER_PHASE;
    const runPhases = async (size: string, kinds: { ids: IdKind; walCompression: string }[]) => {
      for (let round = 0; round < (smoke ? 1 : ROUNDS); round++) {
        // Alternate which kind goes first, so drift on a shared machine lands on both.
        const order = round % 2 === 0 ? kinds : [...kinds].reverse();
        for (const k of order) results.push(await phase(sql, size, k.ids, k.walCompression, perPhase, userIds, products));
      }
    };

    await runPhases("empty", [
      { ids: "v4", walCompression: "off" },
      { ids: "v7", walCompression: "off" },
    ]);

    const loaded = smoke ? 20_000 : ORDERS;
    const loadSeconds = await loadOrders(sql, loaded, users);
    await sql.unsafe("vacuum analyze orders, order_items");
    const sizes = await sql.unsafe<{ rel: string; mb: string }[]>(
      `select c.relname as rel, round(pg_relation_size(c.oid) / 1048576.0)::text as mb from pg_class c
        join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' and c.relkind in ('r', 'i')
         and (c.relname like 'order%' or c.relname like 'idx_order%') order by pg_relation_size(c.oid) desc`,
    );
    const [{ lz4 }] = await sql.unsafe<{ lz4: boolean }[]>(
      "select 'lz4' = any(enumvals) as lz4 from pg_settings where name = 'wal_compression'",
    );
    await runPhases(`${(loaded / 1e6).toFixed(1)} M orders`, [
      { ids: "v4", walCompression: "off" },
      { ids: "v7", walCompression: "off" },
      ...(lz4 ? [{ ids: "v7" as const, walCompression: "lz4" }] : []),
    ]);
    await sql.end();

    const report = render(results, { version, sb, loaded, loadSeconds, users, sizes, perPhase });
    process.stdout.write(report);
    if (args.has("out")) writeFileSync(args.get("out")!, report);
  } finally {
    await cleanup();
  }
}

/** N orders with v4 ids (the database before this change), ~3 items each, two years of created_at. */
async function loadOrders(sql: postgres.Sql, n: number, users: number): Promise<number> {
  const chunk = 100_000;
  const bar = progressBar("orders (v4 ids)", n);
  for (let done = 0; done < n; done += chunk) {
    const size = Math.min(chunk, n - done);
    // Foreign keys are satisfied by construction; their per-row triggers would triple the load time.
    await sql.begin(async (tx) => {
      await tx.unsafe("set local session_replication_role = replica");
      await tx.unsafe(`
        with o as (
          insert into orders (id, user_id, status, total, created_at, updated_at)
          select gen_random_uuid(), u.id,
                 (array['delivered','delivered','delivered','delivered','shipped','cancelled','processing','pending'])[1 + (g % 8)],
                 10.00, t, t
            from (select g, 1 + floor(random() * ${users})::int as un,
                         timestamp '2024-12-01' + (g::float8 / ${n}) * interval '730 days' as t
                    from generate_series(${done + 1}, ${done + size}) g) s
            join bench_users u on u.n = s.un
          returning id
        )
        insert into order_items (id, order_id, product_id, quantity, price)
        select gen_random_uuid(), o.id, p.id, 1, p.price
          from o cross join lateral (
                 -- Correlated (o.id), so it runs per order: 1 to 5 random products each.
                 select 1 + floor(random() * ${PRODUCTS})::int as pn
                   from generate_series(1, 1 + floor(random() * 5)::int) k where o.id is not null) pick
          join bench_products p on p.n = pick.pn`);
    });
    bar.update(done + size);
  }
  return bar.finish();
}

async function phase(
  sql: postgres.Sql,
  size: string,
  ids: IdKind,
  walCompression: string,
  count: number,
  userIds: string[],
  products: { id: string; price: string }[],
): Promise<PhaseResult> {
  await sql.unsafe(`alter system set wal_compression = '${walCompression}'`);
  await sql.unsafe("select pg_reload_conf()");
  const indexes = await indexSizes(sql);
  await sql.unsafe("checkpoint");
  await sql.unsafe("select pg_stat_statements_reset()");
  const [{ lsn: start }] = await sql.unsafe<{ lsn: string }[]>("select pg_current_wal_lsn()::text as lsn");
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      const userId = userIds[Math.floor(Math.random() * userIds.length)];
      const picked = new Set<number>();
      while (picked.size < LINES) picked.add(Math.floor(Math.random() * products.length));
      const lines = [...picked].map((i) => products[i]).sort((a, b) => (a.id < b.id ? -1 : 1));
      await sql.begin(async (tx) => {
        const taken = await Promise.all(lines.map((p) => tx.unsafe<{ price: string }[]>(ORDER_TAKE_STOCK, [1, p.id, 1])));
        const orderId = newId[ids]();
        await Promise.all([
          tx.unsafe(ORDER_INSERT, [orderId, userId, "pending", "30.00"]),
          tx.unsafe(
            orderItemsInsert(lines.length),
            lines.flatMap((p, n) => [newId[ids](), orderId, p.id, 1, taken[n][0].price]),
          ),
        ]);
      });
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  const seconds = (performance.now() - started) / 1000;
  const [{ lsn: end, bytes }] = await sql.unsafe<{ lsn: string; bytes: string }[]>(
    `select pg_current_wal_lsn()::text as lsn, pg_wal_lsn_diff(pg_current_wal_lsn(), '${start}')::text as bytes`,
  );
  // pg_walinspect reads only flushed WAL (synchronous_commit is off): let the WAL writer catch up.
  for (let i = 0; i < 50; i++) {
    const [{ flushed }] = await sql.unsafe<{ flushed: boolean }[]>(`select pg_current_wal_flush_lsn() >= '${end}' as flushed`);
    if (flushed) break;
    await Bun.sleep(100);
  }
  const stats = await sql.unsafe<{ query: string; calls: string; ms: string; dirtied: string; read: string; fpi: string }[]>(
    `select query, calls::text, total_exec_time::text as ms, shared_blks_dirtied::text as dirtied,
            shared_blks_read::text as read, wal_fpi::text as fpi
       from pg_stat_statements where query like 'insert into "order%' or query like 'update "products"%'`,
  );
  type Stat = (typeof stats)[number];
  const sum = (rows: readonly Stat[], f: (r: Stat) => string) => rows.reduce((s, r) => s + Number(f(r)), 0);
  const inserts = stats.filter((r) => r.query.startsWith("insert"));
  const byRel = await sql.unsafe<{ rel: string; bytes: string; fpi: string }[]>(
    `select coalesce(c.relname, 'other (' || w.resource_manager || ')') as rel, sum(w.record_length)::text as bytes,
            count(*) filter (where w.fpi_length > 0)::text as fpi
       from pg_get_wal_records_info('${start}', '${end}') w
       left join pg_class c on c.relfilenode = substring(w.block_ref from 'rel \\d+/\\d+/(\\d+)')::oid
      group by 1 order by sum(w.record_length) desc limit 8`,
  );
  const after = await indexSizes(sql);
  const result: PhaseResult = {
    size,
    ids,
    walCompression,
    orders: count,
    seconds,
    walBytesPerOrder: Number(bytes) / count,
    fpiPerOrder: sum(stats, (r) => r.fpi) / count,
    dirtiedPerOrder: sum(stats, (r) => r.dirtied) / count,
    readPerOrder: sum(stats, (r) => r.read) / count,
    insertMsPerOrder: sum(inserts, (r) => r.ms) / count,
    txMsPerOrder: sum(stats, (r) => r.ms) / count,
    walByRelation: byRel.map((r) => ({ rel: r.rel, bytesPerOrder: Number(r.bytes) / count, fpiPerOrder: Number(r.fpi) / count })),
    indexBytesPerOrder: Object.fromEntries(Object.keys(after).map((k) => [k, (after[k] - (indexes[k] ?? 0)) / count])),
  };
  log(
    `  ${size} ${ids}${walCompression === "off" ? "" : ` wal_compression=${walCompression}`}: ${Math.round(result.walBytesPerOrder)} B WAL/order, ` +
      `${result.fpiPerOrder.toFixed(2)} FPI, ${result.dirtiedPerOrder.toFixed(2)} dirtied, ${result.insertMsPerOrder.toFixed(3)} ms inserts, ${(count / seconds).toFixed(0)} orders/s`,
  );
  return result;
}

async function indexSizes(sql: postgres.Sql): Promise<Record<string, number>> {
  const rows = await sql.unsafe<{ rel: string; bytes: string }[]>(
    `select c.relname as rel, pg_relation_size(c.oid)::text as bytes from pg_class c
       join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind = 'i' and c.relname in
        ('orders_pkey', 'order_items_pkey', 'idx_order_items_order_id', 'idx_orders_user_id', 'idx_orders_user_id_created_at_id', 'idx_orders_created_at')`,
  );
  return Object.fromEntries(rows.map((r) => [r.rel, Number(r.bytes)]));
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function render(
  results: PhaseResult[],
  ctx: {
    version: string;
    sb: string;
    loaded: number;
    loadSeconds: number;
    users: number;
    sizes: { rel: string; mb: string }[];
    perPhase: number;
  },
): string {
  const out: string[] = [];
  out.push(`# orders.create: v4 against v7 ids (${new Date().toISOString().slice(0, 16)}Z)\n`);
  out.push(`Command: \`npm run bench:uuid -- ${process.argv.slice(2).join(" ")}\``);
  out.push(
    `${ctx.version.split(",")[0]}; shared_buffers ${ctx.sb}; ${ctx.users.toLocaleString("en")} customers, ${PRODUCTS} products; ` +
      `${ctx.perPhase.toLocaleString("en")} orders of ${LINES} lines per phase on ${CONNECTIONS} connections, each phase right after a CHECKPOINT; ` +
      `loaded ${ctx.loaded.toLocaleString("en")} v4 orders (~3 items each) in ${ctx.loadSeconds.toFixed(0)} s.\n`,
  );
  out.push(`Loaded sizes (MB): ${ctx.sizes.map((s) => `${s.rel} ${s.mb}`).join(", ")}\n`);
  out.push("Medians over rounds (every phase below). Postgres ms = pg_stat_statements execution time per order.\n");
  out.push(
    "| size | ids | wal_compression | WAL B/order | FPI/order | buffers dirtied/order | buffers read/order | inserts ms/order | transaction ms/order | orders/s |",
  );
  out.push("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
  const groups = new Map<string, PhaseResult[]>();
  for (const r of results) {
    const key = `${r.size}|${r.ids}|${r.walCompression}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  for (const [key, rs] of groups) {
    const [size, ids, wc] = key.split("|");
    const m = (f: (r: PhaseResult) => number) => median(rs.map(f));
    out.push(
      `| ${size} | ${ids} | ${wc} | ${Math.round(m((r) => r.walBytesPerOrder)).toLocaleString("en")} | ${m((r) => r.fpiPerOrder).toFixed(2)} | ` +
        `${m((r) => r.dirtiedPerOrder).toFixed(2)} | ${m((r) => r.readPerOrder).toFixed(2)} | ${m((r) => r.insertMsPerOrder).toFixed(3)} | ` +
        `${m((r) => r.txMsPerOrder).toFixed(3)} | ${Math.round(m((r) => r.orders / r.seconds))} |`,
    );
  }
  out.push("\nWAL per order by relation (pg_walinspect; bytes incl. full-page images · records with an image), first round:\n");
  for (const [key, rs] of groups) {
    const r = rs[0];
    out.push(
      `- ${key.replaceAll("|", " · ")}: ${r.walByRelation.map((w) => `${w.rel} ${Math.round(w.bytesPerOrder)} B · ${w.fpiPerOrder.toFixed(2)}`).join("; ")}`,
    );
  }
  out.push("\nIndex bytes added per order (pg_relation_size difference), first round:\n");
  for (const [key, rs] of groups) {
    const r = rs[0];
    out.push(
      `- ${key.replaceAll("|", " · ")}: ${Object.entries(r.indexBytesPerOrder)
        .map(([k, v]) => `${k} ${v.toFixed(1)}`)
        .join(", ")}`,
    );
  }
  out.push("\nEvery phase:\n");
  out.push("| size | ids | wal_compression | WAL B/order | FPI/order | dirtied/order | inserts ms/order | orders/s |");
  out.push("|---|---|---|---:|---:|---:|---:|---:|");
  for (const r of results) {
    out.push(
      `| ${r.size} | ${r.ids} | ${r.walCompression} | ${Math.round(r.walBytesPerOrder)} | ${r.fpiPerOrder.toFixed(2)} | ${r.dirtiedPerOrder.toFixed(2)} | ${r.insertMsPerOrder.toFixed(3)} | ${Math.round(r.orders / r.seconds)} |`,
    );
  }
  return `${out.join("\n")}\n`;
}

await main();
