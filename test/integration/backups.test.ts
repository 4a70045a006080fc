import { afterAll, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { sql } from "drizzle-orm";
import { createPgliteDatabase, createPostgresDatabase, type Database, type DatabaseHandle, queryRows } from "../../src/db/client";
import { runMigrations } from "../../src/db/migrate";
import type { JobDeps } from "../../src/deps";
import { runJobByName } from "../../src/jobs";
import { runBackupFull, runBackupIncremental, runRestoreVerify } from "../../src/jobs/backup";
import { applyRowsFile, dropScratch } from "../../src/jobs/backup/postgres";
import { applyRetention, backupId, listManifests, type Manifest, writeManifest } from "../../src/jobs/backup/store";
import { describeTables, type Query, untrackedTables } from "../../src/jobs/backup/tables";
import { createTestClock, createTestDeps } from "../support/app";
import { getTestDatabase, onPostgres, resetDatabase, withDatabaseName } from "../support/db";

const dirs: string[] = [];
const newBackupDir = async () => {
  const dir = await mkdtemp(join(tmpdir(), "backups-test-"));
  dirs.push(dir);
  return dir;
};
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const DAY = 86_400_000;
// PGlite instances, pg_dump and pg_restore take seconds on a busy machine.
setDefaultTimeout(120_000);

function depsFor(handle: DatabaseHandle, env: Partial<JobDeps["env"]>, clock = createTestClock()): JobDeps {
  return createTestDeps(handle, { clock, env });
}

/** A little of everything: users, products, orders with items, sessions, throttle rows, idempotency keys. */
async function seed(db: Database) {
  const [alice] = await queryRows<{ id: string }>(
    db,
    sql`insert into users (email, password_hash) values ('alice@example.com', 'h1') returning id`,
  );
  const [bob] = await queryRows<{ id: string }>(
    db,
    sql`insert into users (email, password_hash, role) values ('bob@example.com', 'h2', 'admin') returning id`,
  );
  const products = await queryRows<{ id: string }>(
    db,
    sql`insert into products (name, description, price, stock) values
        ('Lamp', 'A lamp', '19.90', 10), ('Desk', null, '250.00', 3), ('Chair', 'Tab\there "quoted"', '0.10', 0)
        returning id`,
  );
  const [order] = await queryRows<{ id: string }>(
    db,
    sql`insert into orders (user_id, status, total) values (${alice.id}, 'pending', '39.80') returning id`,
  );
  await db.execute(
    sql`insert into order_items (order_id, product_id, quantity, price) values (${order.id}, ${products[0].id}, 2, '19.90')`,
  );
  await db.execute(
    sql`insert into order_idempotency_keys (user_id, key, request_hash, order_id) values (${alice.id}, 'k-1', ${"a".repeat(64)}, ${order.id})`,
  );
  await db.execute(
    sql`insert into sessions (user_id, token_hash, expires_at) values (${alice.id}, 'ha', '2030-01-01 00:00:00'), (${bob.id}, 'hb', '2030-01-01 00:00:00')`,
  );
  await db.execute(
    sql`insert into login_throttle (key, failures, window_started_at, expires_at) values ('ip:192.0.2.1', 2, '2026-11-25 00:00:00', '2026-11-25 00:15:00')`,
  );
  return { alice: alice.id, bob: bob.id, products: products.map((p) => p.id), order: order.id };
}

const TABLES = ["users", "products", "orders", "order_items", "sessions", "login_throttle", "order_idempotency_keys"];

/** Every row of every table as text, ordered: equal for two databases iff their data are identical. */
async function snapshotOf(query: (text: string) => Promise<{ r: string }[]>) {
  const out: Record<string, string[]> = {};
  for (const t of TABLES) out[t] = (await query(`select t::text as r from ${t} t order by t::text`)).map((x) => x.r);
  return out;
}

describe("backups: PGlite (the embedded default)", () => {
  // One embedded database for the section (each takes seconds to start); emptied before each test.
  let pg: DatabaseHandle;
  beforeAll(async () => {
    pg = await createPgliteDatabase(undefined);
    await runMigrations(pg.db);
  });
  beforeEach(async () => {
    await resetDatabase(pg);
    await seed(pg.db);
  });
  afterAll(() => pg.close());

  test("full backup → restore into a fresh PGlite → counts and checksums match", async () => {
    const dir = await newBackupDir();
    const deps = depsFor(pg, { BACKUP_DIR: dir });
    const full = await runBackupFull(deps);
    expect(full.ok).toBe(true);
    const verified = await runRestoreVerify(deps);
    expect(verified).toMatchObject({ ok: true, tables: { users: 2, products: 3, orders: 1, order_items: 1, sessions: 2 } });

    // An incremental on the embedded database is another snapshot; the newest one is verified.
    await pg.db.execute(sql`update products set stock = 99 where name = 'Lamp'`);
    await pg.db.execute(sql`delete from sessions`);
    expect((await runBackupIncremental(deps)).ok).toBe(true);
    const again = await runRestoreVerify(deps);
    expect(again).toMatchObject({ ok: true, tables: { sessions: 0 } });
  });

  test("errors: a corrupted tarball makes restore-verify fail", async () => {
    const dir = await newBackupDir();
    const deps = depsFor(pg, { BACKUP_DIR: dir });
    expect((await runBackupFull(deps)).ok).toBe(true);
    const [manifest] = await listManifests(dir);
    const bytes = await readFile(join(dir, manifest.file));
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    await writeFile(join(dir, manifest.file), bytes);
    const report = await runJobByName("restore-verify", deps);
    expect(report.ok).toBe(false);
    expect(String(report.problems)).toContain(manifest.file);
  });

  test("errors: restore-verify with no backup at all fails", async () => {
    const report = await runRestoreVerify(depsFor(pg, { BACKUP_DIR: await newBackupDir() }));
    expect(report.ok).toBe(false);
  });

  test("deletions are logged on the embedded database too, a cascade by the child's own trigger; an embedded backup empties the log", async () => {
    const query: Query = async (text, params) => (await pg.pglite!.query(text, params)).rows as never;
    expect(await untrackedTables(query, await describeTables(query))).toEqual([]);
    await pg.db.execute(sql`delete from backup_deletions`);
    await pg.db.execute(sql`delete from orders`); // its item and idempotency key cascade
    await pg.db.execute(sql`truncate login_throttle`);
    const log = await queryRows<{ table_name: string; keys: Record<string, string>[] | null }>(
      pg.db,
      sql`select table_name, keys from backup_deletions order by id`,
    );
    expect(log.map((l) => [l.table_name, l.keys?.length ?? null]).sort()).toEqual(
      [
        ["orders", 1],
        ["order_items", 1],
        ["order_idempotency_keys", 1],
        ["login_throttle", null],
      ].sort(),
    );
    expect(Object.keys(log.find((l) => l.table_name === "order_idempotency_keys")!.keys![0]).sort()).toEqual(["key", "user_id"]);

    expect((await runBackupFull(depsFor(pg, { BACKUP_DIR: await newBackupDir() }))).ok).toBe(true);
    expect(await queryRows(pg.db, sql`select 1 from backup_deletions`)).toEqual([]);
  });
});

describe("backups: retention", () => {
  const now = new Date("2026-11-25T02:00:00Z");
  async function fake(dir: string, daysAgo: number, kind: Manifest["kind"], chain?: string): Promise<Manifest> {
    const at = new Date(now.getTime() - daysAgo * DAY);
    const id = backupId(at, kind);
    const file = `${id}.data`;
    await writeFile(join(dir, file), id);
    return writeManifest(dir, {
      format: 1,
      id,
      kind,
      engine: "postgres",
      createdAt: at.toISOString(),
      chain: chain ?? id,
      file,
      tables: {},
    });
  }
  const names = async (dir: string) => (await readdir(dir)).sort();

  test("whole chains older than 30 days go; a chain with a recent member, the newest chain and fresh files stay", async () => {
    const dir = await newBackupDir();
    const a = await fake(dir, 40, "full");
    const a1 = await fake(dir, 35, "incremental", a.id);
    const b = await fake(dir, 31, "full");
    const b1 = await fake(dir, 20, "incremental", b.id);
    const c = await fake(dir, 10, "full");
    const c1 = await fake(dir, 1, "incremental", c.id);
    await writeFile(join(dir, "stale.dump.partial"), "x");
    await utimes(join(dir, "stale.dump.partial"), new Date(now.getTime() - 40 * DAY), new Date(now.getTime() - 40 * DAY));
    await writeFile(join(dir, "fresh.dump.partial"), "x");
    const deleted = await applyRetention(dir, now);
    expect(deleted.sort()).toEqual([a.file, `${a.id}.manifest.json`, a1.file, `${a1.id}.manifest.json`, "stale.dump.partial"].sort());
    const left = await names(dir);
    for (const m of [b, b1, c, c1]) expect(left).toContain(m.file);
    expect(left).toContain("fresh.dump.partial");
  });

  test("the newest full and its chain are kept even when older than 30 days", async () => {
    const dir = await newBackupDir();
    const old = await fake(dir, 90, "full");
    const d = await fake(dir, 60, "full");
    const d1 = await fake(dir, 45, "incremental", d.id);
    const deleted = await applyRetention(dir, now);
    expect(deleted.sort()).toEqual([old.file, `${old.id}.manifest.json`].sort());
    expect(await names(dir)).toEqual([d.file, `${d.id}.manifest.json`, d1.file, `${d1.id}.manifest.json`].sort());
  });
});

describe.if(onPostgres)("backups: Postgres (full + incrementals; pg_dump only with DATABASE_DIRECT_URL, see restore.test.ts)", async () => {
  const handle = onPostgres ? await getTestDatabase() : undefined;
  const dbName = handle?.url ? new URL(handle.url).pathname.slice(1) : "";
  // A direct connection (set by .ci/run); without DATABASE_DIRECT_URL the full backup is a rows file.
  const directUrl = withDatabaseName(process.env.TEST_DIRECT_DATABASE_URL ?? "postgres://postgres@127.0.0.1:55432/postgres", dbName);

  beforeEach(async () => {
    if (handle) await resetDatabase(handle);
  });

  async function compareWithSource(scratch: string) {
    const other = await createPostgresDatabase({ url: withDatabaseName(directUrl, scratch), poolMax: 1, prepare: false });
    try {
      const fromScratch = await snapshotOf((t) => queryRows(other.db, sql.raw(t)));
      const fromSource = await snapshotOf((t) => queryRows(handle!.db, sql.raw(t)));
      for (const t of TABLES) expect({ table: t, rows: fromScratch[t] }).toEqual({ table: t, rows: fromSource[t] });
    } finally {
      await other.close();
      await dropScratch(directUrl, scratch);
    }
  }

  test("full → insert, update, delete → incremental → another change → incremental → restore is identical to the source", async () => {
    const db = handle!.db;
    const ids = await seed(db);
    const dir = await newBackupDir();
    const clock = createTestClock(new Date("2026-11-25T02:00:00Z"));
    const deps = depsFor(handle!, { BACKUP_DIR: dir, DATABASE_URL: directUrl }, clock);

    const full = await runBackupFull(deps);
    expect(full).toMatchObject({ ok: true, backup: { kind: "full" } });

    // Inserts, an update that does not touch updated_at, an update that does, deletes with cascades.
    const [carol] = await queryRows<{ id: string }>(
      db,
      sql`insert into users (email, password_hash) values ('carol@example.com', 'h3') returning id`,
    );
    const [order2] = await queryRows<{ id: string }>(
      db,
      sql`insert into orders (user_id, status, total) values (${carol.id}, 'processing', '250.00') returning id`,
    );
    await db.execute(
      sql`insert into order_items (order_id, product_id, quantity, price) values (${order2.id}, ${ids.products[1]}, 1, '250.00')`,
    );
    await db.execute(sql`update products set stock = stock - 1 where id = ${ids.products[1]}`);
    await db.execute(sql`update products set price = '21.00', updated_at = (now() at time zone 'utc') where id = ${ids.products[0]}`);
    await db.execute(sql`delete from orders where id = ${ids.order}`); // cascades to its items and idempotency key
    await db.execute(sql`delete from sessions where user_id = ${ids.bob}`);
    await db.execute(sql`update login_throttle set failures = failures + 1`);

    clock.advance(6 * 3600);
    const inc1 = await runBackupIncremental(deps);
    expect(inc1).toMatchObject({ ok: true, backup: { kind: "incremental" } });
    expect(inc1.fellBackToFull).toBeUndefined();
    // Deletions travel as the deletion log's keys: exactly those deleted since the full
    // (the cascade included), none of the rows that stayed. Rows travel when written since the
    // full backup's snapshot: at least the changed ones (more while another session holds an
    // old transaction open on the server, which the selection has to treat as possibly unfinished).
    const changes = inc1.changes as Record<string, { rows: number; deleted: number }>;
    expect(changes.orders.deleted).toBe(1);
    expect(changes.order_items.deleted).toBe(1);
    expect(changes.order_idempotency_keys.deleted).toBe(1);
    expect(changes.sessions.deleted).toBe(1);
    expect(changes.users.deleted).toBe(0);
    expect(changes.users.rows).toBeGreaterThanOrEqual(1);
    expect(changes.products.rows).toBeGreaterThanOrEqual(2);

    // A user deleted and their email reused by a new account in the same increment.
    await db.execute(sql`delete from users where id = ${ids.bob}`);
    await db.execute(sql`insert into users (email, password_hash) values ('bob@example.com', 'h4')`);
    await db.execute(sql`update orders set status = 'shipped', updated_at = (now() at time zone 'utc') where id = ${order2.id}`);
    await db.execute(sql`delete from login_throttle`);
    clock.advance(6 * 3600);
    expect((await runBackupIncremental(deps)).ok).toBe(true);

    const verified = await runRestoreVerify(deps, { keepScratch: true });
    expect(verified).toMatchObject({ ok: true });
    // The two incrementals and restore-verify's checkpoint (the one that checksums every table).
    expect((verified.chain as string[]).length).toBe(4);
    expect(verified.checkpoint).toBe((verified.chain as string[])[3]);
    await compareWithSource(String(verified.scratchDatabase));
  });

  test("errors: a corrupted backup file makes restore-verify fail, and the CLI exits non-zero", async () => {
    await seed(handle!.db);
    const dir = await newBackupDir();
    const deps = depsFor(handle!, { BACKUP_DIR: dir, DATABASE_URL: directUrl });
    expect((await runBackupFull(deps)).ok).toBe(true);
    await handle!.db.execute(sql`update products set stock = 7`);
    expect((await runBackupIncremental(deps)).ok).toBe(true);
    expect(await runRestoreVerify(deps)).toMatchObject({ ok: true });

    const manifests = await listManifests(dir);
    const dump = manifests.find((m) => m.kind === "full")!;
    const bytes = await readFile(join(dir, dump.file));
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    await writeFile(join(dir, dump.file), bytes);
    const report = await runRestoreVerify(deps);
    expect(report.ok).toBe(false);
    expect(String(report.problems)).toContain(dump.file);

    const cli = Bun.spawn([process.execPath, "run", "src/cli.ts", "job", "restore-verify"], {
      cwd: join(import.meta.dir, "../.."),
      env: { ...process.env, DATABASE_URL: directUrl, BACKUP_DIR: dir, JWT_SECRET: "x".repeat(40), LOG_LEVEL: "error", SEED: "false" },
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await cli.exited).not.toBe(0);
    expect(await new Response(cli.stdout).text()).toContain("restore verification failed");
  });

  test("errors: a restore that differs from the manifest fails (data checked, not just file hashes)", async () => {
    await seed(handle!.db);
    const dir = await newBackupDir();
    const deps = depsFor(handle!, { BACKUP_DIR: dir, DATABASE_URL: directUrl });
    expect((await runBackupFull(deps)).ok).toBe(true);
    const [manifest] = await listManifests(dir);
    const path = join(dir, `${manifest.id}.manifest.json`);
    const edited = JSON.parse(await readFile(path, "utf8")) as Manifest;
    edited.tables.products.checksum = "12345";
    await writeFile(path, JSON.stringify(edited));
    const report = await runRestoreVerify(deps);
    expect(report.ok).toBe(false);
    expect(String(report.problems)).toContain("products: checksum differs");
  });

  test("an incremental with no full backup yet takes a full one instead", async () => {
    await seed(handle!.db);
    const deps = depsFor(handle!, { BACKUP_DIR: await newBackupDir(), DATABASE_URL: directUrl });
    const report = await runBackupIncremental(deps);
    expect(report).toMatchObject({ ok: true, backup: { kind: "full" }, fellBackToFull: "there is no full backup yet" });
  });

  test("an incremental across a migration takes a full backup instead (a chain never spans a schema change)", async () => {
    await seed(handle!.db);
    const deps = depsFor(handle!, { BACKUP_DIR: await newBackupDir(), DATABASE_URL: directUrl });
    expect((await runBackupFull(deps)).ok).toBe(true);
    await handle!.db.execute(sql`alter table products add column note text`);
    try {
      const report = await runBackupIncremental(deps);
      expect(report).toMatchObject({ ok: true, backup: { kind: "full" }, fellBackToFull: "the schema changed since the previous backup" });
    } finally {
      await handle!.db.execute(sql`alter table products drop column note`);
    }
  });
});

describe.if(onPostgres)("backups: Postgres incrementals follow the change (deletion log)", async () => {
  const handle = onPostgres ? await getTestDatabase() : undefined;
  const dbName = handle?.url ? new URL(handle.url).pathname.slice(1) : "";
  const directUrl = withDatabaseName(process.env.TEST_DIRECT_DATABASE_URL ?? "postgres://postgres@127.0.0.1:55432/postgres", dbName);
  const pooledUrl = handle?.url ?? "";

  beforeEach(async () => {
    if (handle) await resetDatabase(handle);
  });

  /** Every row of every table in the database `name` equals the source's; then it is dropped. */
  async function expectSameAsSource(name: string) {
    const other = await createPostgresDatabase({ url: withDatabaseName(directUrl, name), poolMax: 1, prepare: false });
    try {
      const fromCopy = await snapshotOf((t) => queryRows(other.db, sql.raw(t)));
      const fromSource = await snapshotOf((t) => queryRows(handle!.db, sql.raw(t)));
      for (const t of TABLES) expect({ table: t, rows: fromCopy[t] }).toEqual({ table: t, rows: fromSource[t] });
    } finally {
      await other.close();
      await dropScratch(directUrl, name);
    }
  }

  /** The records of a rows file by kind (R row, D deletion keys, T truncation). */
  async function recordsOf(dir: string, m: Manifest) {
    const lines = gunzipSync(await readFile(join(dir, m.file)))
      .toString("utf8")
      .split("\n")
      .filter(Boolean);
    const kinds = { R: 0, D: 0, T: 0, K: 0 } as Record<string, number>;
    for (const l of lines) kinds[l.split("\t")[1]]++;
    return kinds;
  }

  const changesOf = (report: Record<string, unknown>) =>
    report.changes as Record<string, { rows: number; deleted: number; truncated?: boolean }>;

  test("a chain of three incrementals (inserts, updates, cascading deletes, a key deleted and written again, a truncate): restore-verify and `npm run restore` rebuild the exact database", async () => {
    const db = handle!.db;
    const ids = await seed(db);
    const dir = await newBackupDir();
    const clock = createTestClock(new Date("2026-11-25T02:00:00Z"));
    const deps = depsFor(handle!, { BACKUP_DIR: dir, DATABASE_URL: pooledUrl, DATABASE_DIRECT_URL: directUrl }, clock);
    expect(await runBackupFull(deps)).toMatchObject({ ok: true, backup: { kind: "full" } });

    // 1: a new order with two items, an order deleted with its item and idempotency key.
    const [order2] = await queryRows<{ id: string }>(
      db,
      sql`insert into orders (user_id, status, total) values (${ids.bob}, 'pending', '269.90') returning id`,
    );
    await db.execute(
      sql`insert into order_items (order_id, product_id, quantity, price) values (${order2.id}, ${ids.products[0]}, 1, '19.90'), (${order2.id}, ${ids.products[1]}, 1, '250.00')`,
    );
    await db.execute(sql`delete from orders where id = ${ids.order}`);
    clock.advance(6 * 3600);
    const inc1 = await runBackupIncremental(deps);
    expect(inc1).toMatchObject({ ok: true, backup: { kind: "incremental" } });
    expect(changesOf(inc1).orders.deleted).toBe(1);
    expect(changesOf(inc1).order_items.deleted).toBe(1);
    expect(changesOf(inc1).order_idempotency_keys.deleted).toBe(1);

    // 2: a session deleted and the same id written again; a user deleted (its session cascades);
    // the throttle truncated and refilled; an order's status changed.
    const [s] = await queryRows<{ id: string }>(db, sql`select id from sessions where user_id = ${ids.alice}`);
    await db.execute(sql`delete from sessions where id = ${s.id}`);
    await db.execute(
      sql`insert into sessions (id, user_id, token_hash, expires_at) values (${s.id}, ${ids.alice}, 'ha2', '2031-01-01 00:00:00')`,
    );
    const [carol] = await queryRows<{ id: string }>(
      db,
      sql`insert into users (email, password_hash) values ('carol@example.com', 'h3') returning id`,
    );
    await db.execute(sql`insert into sessions (user_id, token_hash, expires_at) values (${carol.id}, 'hc', '2030-01-01 00:00:00')`);
    clock.advance(6 * 3600);
    expect((await runBackupIncremental(deps)).ok).toBe(true);
    await db.execute(sql`delete from users where id = ${carol.id}`);
    await db.execute(sql`truncate login_throttle`);
    await db.execute(
      sql`insert into login_throttle (key, failures, window_started_at, expires_at) values ('ip:192.0.2.9', 1, '2026-11-25 10:00:00', '2026-11-25 10:15:00')`,
    );
    await db.execute(sql`update orders set status = 'shipped', updated_at = (now() at time zone 'utc') where id = ${order2.id}`);
    clock.advance(6 * 3600);
    const inc3 = await runBackupIncremental(deps);
    expect(changesOf(inc3).users.deleted).toBe(1);
    expect(changesOf(inc3).sessions.deleted).toBe(1);
    expect(changesOf(inc3).login_throttle.truncated).toBe(true);

    const verified = await runRestoreVerify(deps, { keepScratch: true });
    expect(verified).toMatchObject({ ok: true });
    expect((verified.chain as string[]).length).toBe(5);
    await expectSameAsSource(String(verified.scratchDatabase));

    // `npm run restore` of the newest chain into a new database, through the pooler.
    const target = `${dbName}_cli_${Math.random().toString(36).slice(2, 7)}`;
    await handle!.db.execute(sql.raw(`create database "${target}"`));
    const cli = Bun.spawn([process.execPath, "run", "src/cli.ts", "restore", "latest", "--to", withDatabaseName(pooledUrl, target)], {
      cwd: join(import.meta.dir, "../.."),
      env: { ...process.env, DATABASE_URL: pooledUrl, BACKUP_DIR: dir, LOG_LEVEL: "error" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, out] = await Promise.all([cli.exited, new Response(cli.stdout).text()]);
    expect({ code, out: JSON.parse(out.trim().split("\n").at(-1)!).ok }).toEqual({ code: 0, out: true });
    await expectSameAsSource(target);
  });

  test("an incremental after a small change carries records in proportion to the change, not to the tables", async () => {
    const db = handle!.db;
    const ids = await seed(db);
    await db.execute(sql`
      with o as (
        insert into orders (user_id, status, total) select ${ids.alice}, 'pending', '10.00' from generate_series(1, 1000) returning id)
      insert into order_items (order_id, product_id, quantity, price) select o.id, ${ids.products[0]}, k, '5.00' from o, generate_series(1, 2) k`);
    const dir = await newBackupDir();
    const clock = createTestClock(new Date("2026-11-25T02:00:00Z"));
    // Without a direct URL the full backup is a rows file too, so the two count alike.
    const deps = depsFor(handle!, { BACKUP_DIR: dir, DATABASE_URL: pooledUrl }, clock);
    expect((await runBackupFull(deps)).ok).toBe(true);
    // 1 % of the orders: 8 status changes, 2 deleted (4 items cascade).
    await db.execute(sql`update orders set status = 'shipped' where id in (select id from orders order by id limit 8)`);
    await db.execute(sql`delete from orders where id in (select id from orders order by id desc limit 2)`);
    clock.advance(6 * 3600);
    expect((await runBackupIncremental(deps)).ok).toBe(true);
    const [full, inc] = await listManifests(dir);
    const inFull = await recordsOf(dir, full);
    const inInc = await recordsOf(dir, inc);
    expect(inFull.R).toBeGreaterThan(3000);
    // 8 changed rows and 2 deletion statements (orders, and order_items by the cascade), give or
    // take rows another session's open transaction makes the selection keep.
    expect(inInc.R).toBeGreaterThanOrEqual(8);
    expect(inInc.D).toBe(2);
    expect(inInc.K).toBe(0);
    expect((inInc.R + inInc.D) / inFull.R).toBeLessThan(0.01);
    expect(inc.changes!.order_items).toMatchObject({ rows: 0, deleted: 4 });
    const verified = await runRestoreVerify(deps);
    expect(verified).toMatchObject({ ok: true, tables: { orders: 999, order_items: 1997 } });
  });

  test("the cut-off: a deletion and an update committed after an incremental's snapshot are the next one's, taken once", async () => {
    const db = handle!.db;
    const ids = await seed(db);
    const dir = await newBackupDir();
    const clock = createTestClock(new Date("2026-11-25T02:00:00Z"));
    const deps = depsFor(handle!, { BACKUP_DIR: dir, DATABASE_URL: directUrl }, clock);
    expect((await runBackupFull(deps)).ok).toBe(true);

    const { default: postgres } = await import("postgres");
    const other = postgres(directUrl, { max: 1, prepare: false, onnotice: () => {} });
    try {
      let release = () => {};
      const gate = new Promise<void>((r) => (release = r));
      let written = () => {};
      const wrote = new Promise<void>((r) => (written = r));
      const open = other.begin(async (tx) => {
        await tx`delete from sessions where user_id = ${ids.bob}`;
        await tx`update products set stock = 42 where id = ${ids.products[2]}`;
        written();
        await gate;
      });
      await wrote;
      clock.advance(3600);
      const inc1 = await runBackupIncremental(deps);
      expect(changesOf(inc1).sessions.deleted).toBe(0);
      release();
      await open;
      clock.advance(3600);
      const inc2 = await runBackupIncremental(deps);
      expect(changesOf(inc2).sessions.deleted).toBe(1);
      expect(changesOf(inc2).products.rows).toBeGreaterThanOrEqual(1);
      clock.advance(3600);
      const inc3 = await runBackupIncremental(deps);
      expect(changesOf(inc3).sessions.deleted).toBe(0);
    } finally {
      await other.end({ timeout: 5 });
    }
    const verified = await runRestoreVerify(deps, { keepScratch: true });
    expect(verified).toMatchObject({ ok: true, tables: { sessions: 1, products: 3 } });
    await expectSameAsSource(String(verified.scratchDatabase));
  });

  test("the log keeps nothing a backup saw; an incremental on an older parent whose deletions were pruned takes a full backup", async () => {
    const db = handle!.db;
    const ids = await seed(db);
    const dir = await newBackupDir();
    const clock = createTestClock(new Date("2026-11-25T02:00:00Z"));
    const deps = depsFor(handle!, { BACKUP_DIR: dir, DATABASE_URL: directUrl }, clock);
    expect((await runBackupFull(deps)).ok).toBe(true);
    await db.execute(sql`delete from sessions where user_id = ${ids.bob}`);
    clock.advance(3600);
    const inc = await runBackupIncremental(deps);
    expect(inc).toMatchObject({ ok: true, deletionsPruned: expect.any(Number) });
    expect(await queryRows(db, sql`select 1 from backup_deletions where table_name <> ''`)).toEqual([]);

    // The incremental's files removed by hand: its parent did not see the deletion, which is gone.
    const newest = (await listManifests(dir)).at(-1)!;
    await rm(join(dir, newest.file));
    await rm(join(dir, `${newest.id}.manifest.json`));
    clock.advance(3600);
    const next = await runBackupIncremental(deps);
    expect(next).toMatchObject({ ok: true, backup: { kind: "full" } });
    expect(String(next.fellBackToFull)).toContain("pruned");
  });

  test("a rows file from before the deletion log (every key, `K` records) still replays: rows missing from its key list go", async () => {
    const db = handle!.db;
    const ids = await seed(db);
    const query: Query = (text) => queryRows(db, sql.raw(text)) as never;
    const [bobs] = await queryRows<{ id: string }>(db, sql`select id from sessions where user_id = ${ids.bob}`);
    const lines: string[] = [];
    for (const t of await describeTables(query)) {
      const pk = t.primaryKey.map((c) => `'${c}', t."${c}"`).join(", ");
      for (const r of await queryRows<{ j: string }>(db, sql.raw(`select json_build_object(${pk})::text as j from "${t.name}" t`)))
        if (!(t.name === "sessions" && r.j.includes(bobs.id))) lines.push(`${t.name}\tK\t${r.j}`);
    }
    const [lamp] = await queryRows<{ j: string }>(
      db,
      sql`select row_to_json(t)::text as j from (select id, name, description, price, 5 as stock, created_at, updated_at from products where id = ${ids.products[0]}) t`,
    );
    lines.push(`products\tR\t${lamp.j}`);
    const path = join(await newBackupDir(), "legacy.ndjson.gz");
    await writeFile(path, gzipSync(`${lines.join("\n")}\n`));
    const { default: postgres } = await import("postgres");
    const client = postgres(directUrl, { max: 1, prepare: false, onnotice: () => {} });
    try {
      await applyRowsFile(client, path);
    } finally {
      await client.end({ timeout: 5 });
    }
    const counts = await queryRows<{ s: number; u: number; o: number; stock: number }>(
      db,
      sql`select (select count(*)::int from sessions) as s, (select count(*)::int from users) as u, (select count(*)::int from orders) as o,
                 (select stock from products where id = ${ids.products[0]}) as stock`,
    );
    expect(counts[0]).toEqual({ s: 1, u: 2, o: 1, stock: 5 });
  });

  test("errors: a table whose deletion trigger is disabled gets a full backup instead, and says which", async () => {
    await seed(handle!.db);
    const deps = depsFor(handle!, { BACKUP_DIR: await newBackupDir(), DATABASE_URL: directUrl });
    expect((await runBackupFull(deps)).ok).toBe(true);
    const query: Query = (text) => queryRows(handle!.db, sql.raw(text)) as never;
    expect(await untrackedTables(query, await describeTables(query))).toEqual([]);
    await handle!.db.execute(sql`alter table sessions disable trigger backup_log_deletes`);
    try {
      const report = await runBackupIncremental(deps);
      expect(report).toMatchObject({ ok: true, backup: { kind: "full" } });
      expect(String(report.fellBackToFull)).toContain("deletions from sessions are not logged");
    } finally {
      await handle!.db.execute(sql`alter table sessions enable trigger backup_log_deletes`);
    }
  });
});
