// `npm run bench:incremental -- [--orders=N] [--changed=0.01] [--no-restore] [--out=FILE]`: what an
// incremental backup costs next to a full one after a small change, measured in one run.
// Loads N orders (set-based SQL: customers, products, 1–5 items per order, sessions), takes the
// full backup (pg_dump over a direct connection, as the job does with DATABASE_DIRECT_URL),
// changes a fraction of the orders (status updates, a few deletions with their items, a few
// new orders), takes the incremental, and restores the chain into a scratch database through
// restore-verify's own code (checkpoint included) to show it rebuilds the exact database.
// Prints a markdown report and writes it to bench/results/<date>-incremental.md (or --out).
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { createPostgresDatabase } from "../src/db/client";
import { runMigrations } from "../src/db/migrate";
import { pruneDeletionLog, restoreChain, takeFullBackup, takeIncrementalBackup } from "../src/jobs/backup/postgres";
import type { Manifest } from "../src/jobs/backup/store";
import { openBenchDatabase } from "./lib/postgres";
import { progressBar } from "./lib/proc";

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
const ORDERS = Number(arg("orders") ?? 1_000_000);
const CHANGED = Number(arg("changed") ?? 0.01);
const RESTORE = !process.argv.includes("--no-restore");
const CUSTOMERS = Math.max(100, Math.floor(ORDERS / 10));
const PRODUCTS = 1_000;
const BATCH = 50_000;

const log = (msg: string) => process.stderr.write(`${msg}\n`);
const fmt = (n: number) => n.toLocaleString("en");
const mb = (bytes: number) =>
  bytes < 1e3 ? `${bytes} B` : bytes < 1e6 ? `${(bytes / 1e3).toFixed(1)} kB` : `${(bytes / 1e6).toFixed(1)} MB`;

async function timed<T>(what: string, fn: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  log(`${what} …`);
  const started = performance.now();
  const value = await fn();
  const seconds = (performance.now() - started) / 1000;
  log(`${what}: ${seconds.toFixed(1)} s`);
  return { value, seconds };
}

const db = await openBenchDatabase(log);
const dir = await mkdtemp(join(tmpdir(), "bench-backups-"));
const sql = postgres(db.directUrl, { max: 1, prepare: false, onnotice: () => {} });
try {
  const handle = await createPostgresDatabase({ url: db.directUrl, poolMax: 1, prepare: false });
  await runMigrations(handle.db);
  await handle.close();

  // Set-based load: customers and products first, then orders with their items in batches.
  const load = await timed(`loading ${fmt(ORDERS)} orders`, async () => {
    await sql.unsafe(`insert into users (email, password_hash, created_at, updated_at)
      select 'c' || g || '@example.com', 'x', now() - interval '2 years' * random(), now() from generate_series(1, ${CUSTOMERS}) g`);
    await sql.unsafe(`insert into products (name, description, price, stock)
      select 'Product ' || g, 'Description of product ' || g, (1 + g % 500)::numeric(10,2), 1000000 from generate_series(1, ${PRODUCTS}) g`);
    await sql.unsafe(`create table bench_u as select row_number() over () as n, id from users; create unique index on bench_u (n)`);
    await sql.unsafe(
      `create table bench_p as select row_number() over () as n, id, price from products; create unique index on bench_p (n)`,
    );
    const bar = progressBar("orders", ORDERS);
    for (let done = 0; done < ORDERS; done += BATCH) {
      const n = Math.min(BATCH, ORDERS - done);
      // Customers are skewed (a cube of a uniform draw): a few have thousands of orders.
      await sql.unsafe(`
        with o as (
          insert into orders (user_id, status, total, created_at, updated_at)
          select u.id, c.status, 0, c.t, c.t
            from generate_series(${done + 1}, ${done + n}) g,
                 lateral (select 1 + floor(${CUSTOMERS} * power(random(), 3))::int + g * 0 as un,
                                 (array['delivered','delivered','delivered','shipped','processing','pending','cancelled'])[1 + floor(random() * 7)::int] as status,
                                 now() - interval '730 days' * random() as t) c
            join bench_u u on u.n = c.un
          returning id)
        insert into order_items (order_id, product_id, quantity, price)
        select o.id, p.id, 1 + floor(random() * 3)::int, p.price
          from o, lateral generate_series(1, 1 + floor(random() * 5)::int + length(o.id::text) * 0) k,
               lateral (select 1 + floor(random() * ${PRODUCTS})::int + k * 0 as pn) c
          join bench_p p on p.n = c.pn`);
      bar.update(done + n);
    }
    bar.finish();
    await sql.unsafe(
      `update orders o set total = s.t from (select order_id, sum(quantity * price) t from order_items group by order_id) s where s.order_id = o.id`,
    );
    await sql.unsafe(`insert into sessions (user_id, token_hash, expires_at)
      select id, md5(id::text), now() + interval '30 days' * (random() - 0.9) from users`);
    await sql.unsafe("drop table bench_u; drop table bench_p");
    await sql.unsafe("vacuum analyze");
  });
  const [sizes] = await sql.unsafe<{ orders: string; items: string; db: string }[]>(
    `select (select count(*) from orders)::text as orders, (select count(*) from order_items)::text as items,
            pg_database_size(current_database())::text as db`,
  );

  const t0 = new Date("2026-12-02T02:00:00Z");
  const full = await timed("full backup (pg_dump)", () => takeFullBackup(db.pooledUrl, dir, t0, db.directUrl));
  await pruneDeletionLog(db.directUrl, full.value.snapshotXmin!);

  // The change: CHANGED of the orders; of those, 95 % change status, 5 % are deleted (their
  // items cascade); plus new orders worth a tenth of the change, with items.
  const every = Math.max(1, Math.round(1 / CHANGED));
  const change = await timed(`changing ${(CHANGED * 100).toFixed(2)} % of orders`, async () => {
    const updated = await sql.unsafe(
      `update orders set status = 'shipped', updated_at = now() where abs(hashtext(id::text)) % ${every * 20} not in (0) and abs(hashtext(id::text)) % ${every} = 0`,
    );
    const deleted = await sql.unsafe(`delete from orders where abs(hashtext(id::text)) % ${every * 20} = 0`);
    // New orders by existing customers (a tenth of the change), one item each.
    const inserted = await sql.unsafe(`
      with o as (
        insert into orders (user_id, status, total)
        select user_id, 'pending', 10 from orders where abs(hashtext(id::text)) % ${every * 10} = 1
        returning id)
      insert into order_items (order_id, product_id, quantity, price)
      select o.id, (select id from products order by id limit 1), 1, 10 from o`);
    return { updated: updated.count, deleted: deleted.count, insertedItems: inserted.count };
  });

  const inc = await timed("incremental backup", () =>
    takeIncrementalBackup(db.directUrl, dir, new Date(t0.getTime() + 6 * 3600_000), full.value),
  );
  if ("chainBroken" in inc.value) throw new Error(`the incremental fell back to a full backup: ${inc.value.chainBroken}`);
  const incremental = inc.value as Manifest;
  await pruneDeletionLog(db.directUrl, incremental.snapshotXmin!);

  let verify: { seconds: number; checkpointSeconds: number; checkpointBytes: number; problems: string[] } | undefined;
  if (RESTORE) {
    const checkpoint = await timed("restore-verify's checkpoint (incremental with checksums)", () =>
      takeIncrementalBackup(db.directUrl, dir, new Date(t0.getTime() + 7 * 3600_000), incremental, { checksums: true }),
    );
    if ("chainBroken" in checkpoint.value) throw new Error(`the checkpoint fell back: ${checkpoint.value.chainBroken}`);
    const chain = [full.value, incremental, checkpoint.value as Manifest];
    const restored = await timed("restore of the chain into a scratch database, checked step by step", () =>
      restoreChain(db.directUrl, dir, chain, new Date()),
    );
    verify = {
      seconds: restored.seconds,
      checkpointSeconds: checkpoint.seconds,
      checkpointBytes: (checkpoint.value as Manifest).bytes,
      problems: restored.value.problems,
    };
  }

  // What the deletion log costs a batch delete (prune-sessions' shape: expired sessions, 5,000 a
  // statement), batches alternating with the trigger disabled and enabled.
  const deleteCost = await timed("batch deletes of expired sessions, trigger off / on", async () => {
    const ms = { off: [] as number[], on: [] as number[] };
    for (let i = 0; i < 12; i++) {
      const side = i % 2 === 0 ? "off" : "on";
      await sql.unsafe(`alter table sessions ${side === "off" ? "disable" : "enable"} trigger backup_log_deletes`);
      const started = performance.now();
      const r = await sql.unsafe("delete from sessions where id in (select id from sessions where expires_at < now() limit 5000)");
      if (r.count === 5000) ms[side].push(performance.now() - started);
    }
    await sql.unsafe("alter table sessions enable trigger backup_log_deletes");
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
    return { off: median(ms.off), on: median(ms.on), batches: ms.off.length + ms.on.length };
  });

  const changes = incremental.changes!;
  const sumOf = (f: (c: (typeof changes)[string]) => number) => Object.values(changes).reduce((a, c) => a + f(c), 0);
  const rowsCarried = sumOf((c) => c.rows);
  const keysCarried = sumOf((c) => c.deleted ?? 0);
  const totalRows = Object.values(full.value.tables).reduce((a, t) => a + t.rows, 0);
  const date = new Date().toISOString().slice(0, 10);
  const report = `# Incremental vs full backup (${date})

\`npm run bench:incremental -- --orders=${ORDERS} --changed=${CHANGED}${RESTORE ? "" : " --no-restore"}\` on Postgres 15 (${db.ownServer ? ".ci/pg.sh, this machine" : "BENCH_DATABASE_URL"}).
Loaded ${fmt(Number(sizes.orders))} orders, ${fmt(Number(sizes.items))} items, ${fmt(CUSTOMERS)} customers and sessions, ${fmt(PRODUCTS)} products in ${load.seconds.toFixed(0)} s; database ${mb(Number(sizes.db))}.
Change: ${fmt(change.value.updated)} status updates, ${fmt(change.value.deleted)} orders deleted (items cascade), ${fmt(change.value.insertedItems)} new orders with an item each (${change.seconds.toFixed(1)} s).

| backup | bytes | seconds | rows carried | deleted keys carried |
|---|---|---|---|---|
| full (\`pg_dump\` + counts and checksums) | ${mb(full.value.bytes)} | ${full.seconds.toFixed(1)} | ${fmt(totalRows)} (all) | – |
| incremental | ${mb(incremental.bytes)} | ${inc.seconds.toFixed(1)} | ${fmt(rowsCarried)} | ${fmt(keysCarried)} |
| **ratio incremental / full** | **${((incremental.bytes / full.value.bytes) * 100).toFixed(2)} %** | **${((inc.seconds / full.seconds) * 100).toFixed(1)} %** | ${((rowsCarried / totalRows) * 100).toFixed(2)} % | |
${
  verify
    ? `| restore-verify's checkpoint (incremental + every table's checksum) | ${mb(verify.checkpointBytes)} | ${verify.checkpointSeconds.toFixed(1)} | | |

Restore of full + incremental + checkpoint into a scratch database, each step checked against its manifest
(counts after the incremental, counts and checksums after the full and the checkpoint): ${verify.seconds.toFixed(0)} s, ${
        verify.problems.length ? `**${verify.problems.length} problems**: ${verify.problems.join("; ")}` : "exact (no difference)"
      }.`
    : "(restore not run: --no-restore)"
}

The deletion log's cost to a batch delete (5,000 expired sessions a statement, ${deleteCost.value.batches} batches alternating, medians):
${deleteCost.value.off.toFixed(0)} ms without the trigger, ${deleteCost.value.on.toFixed(0)} ms with it (${(deleteCost.value.on / deleteCost.value.off).toFixed(2)}×).

Per table, the incremental carried: ${Object.entries(changes)
    .filter(([, c]) => c.rows || c.deleted)
    .map(([t, c]) => `${t} ${fmt(c.rows)} rows${c.deleted ? ` + ${fmt(c.deleted)} deleted keys` : ""}`)
    .join(", ")}.
`;
  process.stdout.write(report);
  const out = arg("out") ?? join(import.meta.dir, "results", `${date}-incremental.md`);
  await writeFile(out, report);
  log(`written to ${out}`);
  if (verify?.problems.length) process.exitCode = 1;
} finally {
  await sql.end({ timeout: 5 });
  await rm(dir, { recursive: true, force: true });
  await db.teardown();
}
