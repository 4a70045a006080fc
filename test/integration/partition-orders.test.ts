// npm run partition-orders on real Postgres: the plan, the migration on a database holding orders
// of several months, the service's key behaviours on the partitioned table (through PgBouncer,
// as deployed), a pg_dump backup and restore of the new shape, and the refusals. Runs in its own
// databases (CREATE DATABASE) so the other suites never see a partitioned `orders`.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { createPostgresDatabase, type DatabaseHandle, queryRows } from "../../src/db/client";
import { applyStatementTimeout, runMigrations } from "../../src/db/migrate";
import {
  DEFAULT_PARTITION,
  defaultOptions,
  HISTORY,
  ORDER_IDS,
  PartitionRefusal,
  partitionOrders,
  sharesServerSessions,
} from "../../src/db/partition-orders";
import { sqlState } from "../../src/errors";
import { restoreInto, takeFullBackup, takeIncrementalBackup } from "../../src/jobs/backup/postgres";
import { compareTables } from "../../src/jobs/backup/store";
import { createTestDeps, insertProducts, signUp, signUpAdmin, stocksOf } from "../support/app";
import { prepareStatements, TEST_DATABASE_URL, withDatabaseName } from "../support/db";

/** Set by .ci/run: the Postgres server itself, next to TEST_DATABASE_URL (PgBouncer). */
const DIRECT = process.env.TEST_DIRECT_DATABASE_URL || undefined;
if (!DIRECT) {
  console.error(
    "partition-orders tests skipped: TEST_DIRECT_DATABASE_URL is not set (the script needs a direct Postgres connection; .ci/run sets it)",
  );
}
setDefaultTimeout(120_000);

const quiet = { ...defaultOptions, log: () => {} };
const created: string[] = [];
const stamp = `${process.pid}_${Date.now().toString(36)}`;

async function createDatabase(suffix: string): Promise<string> {
  const name = `partition_${suffix}_${stamp}`;
  const admin = await createPostgresDatabase({ url: DIRECT!, poolMax: 1, prepare: false });
  await admin.db.execute(sql.raw(`create database "${name}"`));
  await admin.close();
  created.push(name);
  return name;
}

afterAll(async () => {
  if (!DIRECT || created.length === 0) return;
  const admin = await createPostgresDatabase({ url: DIRECT, poolMax: 1, prepare: false });
  for (const name of created) await admin.db.execute(sql.raw(`drop database if exists "${name}" with (force)`));
  await admin.close();
}, 60_000);

/** The CLI as an operator runs it, with only the given database variables. */
async function cli(args: string[], env: Record<string, string>) {
  const child = Bun.spawn([process.execPath, "run", "scripts/partition-orders.ts", ...args], {
    cwd: join(import.meta.dir, "../.."),
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { stdout, stderr, code };
}

describe.if(DIRECT !== undefined)("partition-orders (Postgres)", () => {
  let name: string;
  let directUrl: string;
  let serviceUrl: string;
  let handle: DatabaseHandle;
  const count = async (text: string) => Number((await queryRows<{ n: number }>(handle.db, sql.raw(text)))[0].n);

  beforeAll(async () => {
    name = await createDatabase("main");
    directUrl = withDatabaseName(DIRECT!, name);
    // The service as deployed: through PgBouncer when the suite has it, else direct.
    serviceUrl = withDatabaseName(TEST_DATABASE_URL ?? DIRECT!, name);
    const migrator = await createPostgresDatabase({ url: directUrl, poolMax: 1, prepare: false });
    await runMigrations(migrator.db);
    // The role's statement timeout that db:migrate writes: the script's long steps must not obey it.
    await applyStatementTimeout(migrator.db, 30_000);
    await migrator.close();
    handle = await createPostgresDatabase({ url: serviceUrl, poolMax: 10, prepare: TEST_DATABASE_URL ? prepareStatements : true });
  });
  afterAll(() => handle?.close());

  test("dry run, apply, service behaviours, re-run, backup and restore", async () => {
    const deps = createTestDeps(handle.db);
    const customer = await signUp(deps);
    const admin = await signUpAdmin(deps);
    const [p1, p2] = await insertProducts(handle.db, [
      { price: "2.50", stock: 1000 },
      { price: "7.00", stock: 1000 },
    ]);
    // Orders over the last seven months (two a week), each with two items; one with an idempotency key.
    await handle.db.execute(sql`
      with o as (
        insert into orders (user_id, status, total, created_at, updated_at)
        select ${customer.user.id}::uuid, 'delivered', 9.50, t, t
          from generate_series((now() at time zone 'utc') - interval '7 months', (now() at time zone 'utc') - interval '1 day', interval '3 days 11 hours') t
        returning id, created_at)
      insert into order_items (order_id, product_id, quantity, price)
      select id, ${p1.id}::uuid, 1, 2.50 from o union all select id, ${p2.id}::uuid, 1, 7.00 from o`);
    const keyed = await customer.caller.orders.create({ items: [{ productId: p1.id, quantity: 1 }], idempotencyKey: "before-the-swap" });
    // A future-dated order would not fit the history partition: refused, with the reason.
    const [{ id: futureId }] = await queryRows<{ id: string }>(
      handle.db,
      sql`insert into orders (user_id, status, total, created_at) values (${customer.user.id}::uuid, 'pending', 1, (now() at time zone 'utc') + interval '1 year') returning id`,
    );
    await expect(partitionOrders(directUrl, { ...quiet, dryRun: true })).rejects.toThrow(/in the future/);
    await handle.db.execute(sql`delete from orders where id = ${futureId}::uuid`);
    const ordersBefore = await count("select count(*)::int as n from orders");
    const months = await count("select count(distinct date_trunc('month', created_at))::int as n from orders");
    expect(months).toBeGreaterThanOrEqual(7);

    // --- the plan: every step with its lock and time, nothing changed
    const dry = await partitionOrders(directUrl, { ...quiet, dryRun: true });
    expect(dry.steps).toEqual([]);
    for (const needle of [
      "create unique index concurrently",
      "create or replace trigger",
      "with batch as",
      "validate constraint",
      "not valid",
      "in access exclusive mode",
      `attach partition public."${HISTORY}" for values from (minvalue) to ('${dry.state.bound}')`,
      `partition of public."orders" default`,
      "analyze",
    ]) {
      expect(dry.plan).toContain(needle);
    }
    expect(dry.plan.match(/^ {4}lock: /gm)?.length).toBe(dry.plan.match(/^\s*\d+\. /gm)?.length);
    expect(dry.plan.match(/^ {4}time: /gm)?.length).toBe(dry.plan.match(/^\s*\d+\. /gm)?.length);
    expect(await count("select count(*)::int as n from pg_class where relname = 'orders' and relkind = 'r'")).toBe(1);
    expect(await count(`select count(*)::int as n from pg_class where relname = '${ORDER_IDS}'`)).toBe(0);
    // The CLI prints the same plan.
    const printed = await cli(["--dry-run"], { DATABASE_DIRECT_URL: directUrl });
    expect(printed.code).toBe(0);
    expect(printed.stdout).toContain("in access exclusive mode");
    expect(printed.stdout).toContain("dry run: nothing was changed");

    // A client with server-side prepared statements (DATABASE_PREPARE=true on a direct URL)
    // keeps working across the swap: Postgres re-resolves `orders` in its prepared statements.
    const preparing = await createPostgresDatabase({ url: directUrl, poolMax: 1, prepare: true });
    const preparedDeps = createTestDeps(preparing.db);
    const { createOrder } = await import("../../src/services/orders");
    const actor = { id: customer.user.id, role: "customer" as const };
    await createOrder(preparedDeps.db, actor, { items: [{ productId: p1.id, quantity: 1 }] });

    // --- apply, while orders keep coming in
    let writing = true;
    const placedDuring: string[] = [];
    const writer = (async () => {
      while (writing) {
        const o = await customer.caller.orders.create({ items: [{ productId: p2.id, quantity: 1 }] });
        placedDuring.push(o.id);
      }
    })();
    const report = await partitionOrders(directUrl, { ...quiet, batchSize: 25, dryRun: false });
    writing = false;
    await writer;
    expect(placedDuring.length).toBeGreaterThan(0);
    const preparedAfter = await createOrder(preparedDeps.db, actor, { items: [{ productId: p1.id, quantity: 1 }] });
    await preparing.close();
    placedDuring.push(preparedAfter.id);
    const swap = report.steps.find((s) => s.title.startsWith("swap"))!;
    expect(swap.details?.lockHeldMs).toBeGreaterThan(0);
    expect(await count("select count(*)::int as n from pg_class where relname = 'orders' and relkind = 'p'")).toBe(1);
    const partitions = (
      await queryRows<{ name: string }>(
        handle.db,
        sql`select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'public.orders'::regclass order by 1`,
      )
    ).map((r) => r.name);
    expect(partitions).toContain(HISTORY);
    expect(partitions).toContain(DEFAULT_PARTITION);
    expect(partitions.filter((p) => /^orders_\d{4}_\d{2}$/.test(p)).length).toBe(report.state.months.length);
    // Nothing lost, order_ids complete, every constraint validated.
    const ordersAfter = await count("select count(*)::int as n from orders");
    // (+1: the prepared client's order placed before the run.)
    expect(ordersAfter).toBe(ordersBefore + 1 + placedDuring.length);
    expect(await count(`select count(*)::int as n from ${ORDER_IDS}`)).toBe(ordersAfter);
    expect(
      await count(
        `select count(*)::int as n from orders o where not exists (select 1 from ${ORDER_IDS} i where i.id = o.id and i.created_at = o.created_at)`,
      ),
    ).toBe(0);
    // (Postgres 15 leaves the per-partition clones of a validated key into a partitioned table
    // marked not validated; only the constraints a user made, conparentid = 0, say anything.)
    expect(
      await count(
        "select count(*)::int as n from pg_constraint where not convalidated and conparentid = 0 and connamespace = 'public'::regnamespace",
      ),
    ).toBe(0);

    // --- the service, unchanged, on the partitioned table
    const placed = await customer.caller.orders.create({
      items: [
        { productId: p1.id, quantity: 2 },
        { productId: p2.id, quantity: 1 },
      ],
      idempotencyKey: "after-the-swap",
    });
    expect(placed.total).toBe("12.00");
    const replay = await customer.caller.orders.create({
      items: [
        { productId: p2.id, quantity: 1 },
        { productId: p1.id, quantity: 2 },
      ],
      idempotencyKey: "after-the-swap",
    });
    expect(replay).toEqual(placed);
    // A key taken before the swap still answers its order.
    const replayOld = await customer.caller.orders.create({
      items: [{ productId: p1.id, quantity: 1 }],
      idempotencyKey: "before-the-swap",
    });
    expect(replayOld.id).toBe(keyed.id);
    await expect(
      customer.caller.orders.create({ items: [{ productId: p2.id, quantity: 5 }], idempotencyKey: "after-the-swap" }),
    ).rejects.toMatchObject({ code: "CONFLICT" });
    const [{ partition }] = await queryRows<{ partition: string }>(
      handle.db,
      sql`select tableoid::regclass::text as partition from orders where id = ${placed.id}::uuid`,
    );
    expect(partition).toBe(HISTORY);

    // An order of a later month lands in its monthly partition and is listed first.
    const later = `${report.state.bound.slice(0, 8)}15 12:00:00`;
    const [future] = await queryRows<{ id: string; partition: string }>(
      handle.db,
      sql`insert into orders (user_id, status, total, created_at, updated_at)
          values (${customer.user.id}::uuid, 'pending', 2.50, ${later}::timestamp, ${later}::timestamp)
          returning id, tableoid::regclass::text as partition`,
    );
    await handle.db.execute(
      sql`insert into order_items (order_id, product_id, quantity, price) values (${future.id}::uuid, ${p1.id}::uuid, 1, 2.50)`,
    );
    expect(future.partition).toBe(`orders_${later.slice(0, 4)}_${later.slice(5, 7)}`);

    // List with cursor: every order exactly once, newest first, across partitions.
    const seen: { id: string; createdAt: string }[] = [];
    let cursor: string | null | undefined;
    do {
      const page = await admin.caller.orders.list({ limit: 17, cursor: cursor ?? undefined });
      seen.push(...page.items.map((o) => ({ id: o.id, createdAt: o.createdAt })));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen.length).toBe(ordersAfter + 2);
    expect(new Set(seen.map((o) => o.id)).size).toBe(seen.length);
    expect(seen[0].id).toBe(future.id);
    for (let i = 1; i < seen.length; i++) expect(seen[i - 1].createdAt >= seen[i].createdAt).toBe(true);
    const mine = await customer.caller.orders.list({ limit: 5 });
    expect(mine.items[0].items).toHaveLength(1);

    // Status changes and a cancel that restocks.
    const moved = await admin.caller.orders.updateStatus({ id: placed.id, status: "processing" });
    expect(moved.status).toBe("processing");
    const stockBefore = (await stocksOf(handle.db, [p1.id]))[p1.id];
    const cancelled = await customer.caller.orders.cancel({ id: placed.id });
    expect(cancelled.status).toBe("cancelled");
    expect((await stocksOf(handle.db, [p1.id]))[p1.id]).toBe(stockBefore + 2);
    expect((await customer.caller.orders.byId({ id: future.id })).items).toHaveLength(1);

    // No oversell: 8 concurrent orders of 1 on a stock of 3.
    const [scarce] = await insertProducts(handle.db, [{ price: "1.00", stock: 3 }], "scarce");
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, () => customer.caller.orders.create({ items: [{ productId: scarce.id, quantity: 1 }] })),
    );
    expect(results.filter((r) => r.status === "fulfilled").length).toBe(3);
    expect(results.filter((r) => r.status === "rejected").every((r) => (r.reason as { code?: string }).code === "CONFLICT")).toBe(true);
    expect((await stocksOf(handle.db, [scarce.id]))[scarce.id]).toBe(0);

    // orders.id stays unique across partitions: the same id in another month is refused.
    const duplicate = await handle.db
      .execute(
        sql`insert into orders (id, user_id, status, total, created_at) values (${placed.id}::uuid, ${customer.user.id}::uuid, 'pending', 1, ${later}::timestamp)`,
      )
      .then(
        () => "inserted",
        (error) => sqlState(error),
      );
    expect(duplicate).toBe("23505");
    // Deleting an order still cascades to its items (orders → order_ids → order_items).
    await handle.db.execute(sql`delete from orders where id = ${future.id}::uuid`);
    expect(await count(`select count(*)::int as n from order_items where order_id = '${future.id}'`)).toBe(0);
    expect(await count(`select count(*)::int as n from ${ORDER_IDS} where id = '${future.id}'`)).toBe(0);

    // --- a re-run: nothing to do; with more months ahead it adds them
    const again = await partitionOrders(directUrl, { ...quiet, dryRun: false });
    expect(again.steps).toEqual([]);
    expect(again.plan).toContain("nothing to do");
    const more = await partitionOrders(directUrl, { ...quiet, monthsAhead: defaultOptions.monthsAhead + 2, dryRun: false });
    expect(more.steps.map((s) => s.title.split(" ")[1])).toHaveLength(2);
    expect(await count("select count(*)::int as n from pg_inherits where inhparent = 'public.orders'::regclass")).toBe(
      partitions.length + 2,
    );

    // --- backups: a pg_dump full of the new shape restores exactly (counts and checksums)
    const dir = await mkdtemp(join(tmpdir(), "partition-backup-"));
    try {
      const manifest = await takeFullBackup(serviceUrl, dir, new Date(), directUrl);
      const target = await createDatabase("restored");
      const restored = await restoreInto(withDatabaseName(DIRECT!, target), dir, [manifest]);
      expect(restored.problems).toEqual([]);
      expect(compareTables(manifest.tables, restored.tables)).toEqual([]);
      expect(Object.keys(manifest.tables)).toContain(ORDER_IDS);
      const check = await createPostgresDatabase({ url: withDatabaseName(DIRECT!, target), poolMax: 1, prepare: false });
      const [{ kind }] = await queryRows<{ kind: string }>(
        check.db,
        sql`select relkind::text as kind from pg_class where oid = 'public.orders'::regclass`,
      );
      await check.close();
      expect(kind).toBe("p");
      // Partitions are read through orders, not listed beside it (their rows would count twice).
      expect(Object.keys(manifest.tables)).not.toContain(HISTORY);
      expect(manifest.tables.orders.rows).toBe(await count("select count(*)::int as n from orders"));

      // --- incrementals on the new shape: an order placed, one deleted through orders (its
      // items and order_ids row go by cascade), and the chain restores exactly
      await customer.caller.orders.create({ items: [{ productId: p2.id, quantity: 2 }] });
      const [{ id: gone }] = await queryRows<{ id: string }>(handle.db, sql`select id::text as id from orders order by created_at limit 1`);
      await handle.db.execute(sql`delete from orders where id = ${gone}::uuid`);
      const incremental = await takeIncrementalBackup(serviceUrl, dir, new Date(Date.now() + 1000), manifest);
      if ("chainBroken" in incremental) throw new Error(`the incremental fell back: ${incremental.chainBroken}`);
      expect(incremental.kind).toBe("incremental");
      expect(incremental.changes?.orders).toMatchObject({ rows: 1, deleted: 1 });
      expect(incremental.changes?.order_items?.deleted).toBe(2);
      expect(incremental.changes?.[ORDER_IDS]?.deleted).toBe(1);
      const target2 = await createDatabase("restored_incremental");
      const chain = await restoreInto(withDatabaseName(DIRECT!, target2), dir, [manifest, incremental]);
      expect(chain.problems).toEqual([]);
      expect(compareTables(incremental.tables, chain.tables)).toEqual([]);
      expect(chain.tables.orders.rows).toBe(await count("select count(*)::int as n from orders"));

      // --- detaching a partition takes rows out without a deletion: the next backup is a full
      const last = partitions
        .filter((p) => /^orders_\d{4}_\d{2}$/.test(p))
        .sort()
        .at(-1)!;
      await handle.db.execute(sql.raw(`alter table orders detach partition "${last}"`));
      const afterDetach = await takeIncrementalBackup(serviceUrl, dir, new Date(Date.now() + 2000), incremental);
      expect(afterDetach).toEqual({ chainBroken: "the schema changed since the previous backup" });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("refusals: pooler URL, PGlite, a table partitioned by someone else, bad usage", async () => {
    if (TEST_DATABASE_URL) {
      const pooled = withDatabaseName(TEST_DATABASE_URL, name);
      expect(await sharesServerSessions(pooled)).toBe(true);
      const refused = await cli(["--dry-run"], { DATABASE_URL: pooled });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain("transaction-mode pooler");
      expect(refused.stderr).toContain("DATABASE_DIRECT_URL");
      // A pooled DATABASE_DIRECT_URL is refused the same way.
      expect((await cli(["--dry-run"], { DATABASE_URL: pooled, DATABASE_DIRECT_URL: pooled })).code).toBe(2);
    }
    expect(await sharesServerSessions(directUrl)).toBe(false);

    const pglite = await cli(["--dry-run"], {});
    expect(pglite.code).toBe(2);
    expect(pglite.stderr).toContain("Postgres only");
    expect(pglite.stderr).toContain("PGlite");

    const usage = await cli(["--batch=0"], { DATABASE_DIRECT_URL: directUrl });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("usage: npm run partition-orders");

    const other = await createDatabase("other");
    const otherUrl = withDatabaseName(DIRECT!, other);
    const otherDb = await createPostgresDatabase({ url: otherUrl, poolMax: 1, prepare: false });
    await otherDb.db.execute(sql`create table orders (id uuid not null, created_at timestamp not null) partition by range (created_at)`);
    await otherDb.close();
    await expect(partitionOrders(otherUrl, { ...quiet, dryRun: true })).rejects.toBeInstanceOf(PartitionRefusal);
    const cliOther = await cli([], { DATABASE_DIRECT_URL: otherUrl });
    expect(cliOther.code).toBe(2);
    expect(cliOther.stderr).toContain("not by this script");
  });
});
