import { afterAll, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { createPgliteDatabase, createPostgresDatabase, type Database, type DatabaseHandle, queryRows } from "../../src/db/client";
import { runMigrations } from "../../src/db/migrate";
import type { JobDeps } from "../../src/deps";
import { runJobByName } from "../../src/jobs";
import { runBackupFull, runBackupIncremental, runRestoreVerify } from "../../src/jobs/backup";
import { dropScratch } from "../../src/jobs/backup/postgres";
import { applyRetention, backupId, listManifests, type Manifest, writeManifest } from "../../src/jobs/backup/store";
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
