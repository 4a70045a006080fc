// npm run restore and the maintenance connections (src/jobs/backup/restore.ts, postgres.ts):
// on Postgres through PgBouncer in transaction mode, without and with DATABASE_DIRECT_URL, and
// on the embedded default into an empty DATA_DIR.
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { createPostgresDatabase, type Database, queryRows } from "../../src/db/client";
import type { JobDeps } from "../../src/deps";
import { runBackupFull, runBackupIncremental, runRestoreVerify } from "../../src/jobs/backup";
import { localiseSettings } from "../../src/jobs/backup/postgres";
import { chainFor } from "../../src/jobs/backup/restore";
import type { Manifest } from "../../src/jobs/backup/store";
import { describeTables, type Query, tableStates } from "../../src/jobs/backup/tables";
import { createTestClock, createTestDeps, TEST_JWT_SECRET } from "../support/app";
import { getTestDatabase, onPostgres, prepareStatements, resetDatabase, withDatabaseName } from "../support/db";
import { repoRoot, startServer } from "../support/server";

setDefaultTimeout(240_000);
const dirs: string[] = [];
const tempDir = async (prefix = "restore-test-") => {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
};
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** `npm run restore -- …` / `npm run job -- …` as a person runs it: the CLI in its own process. */
async function cli(args: string[], env: Record<string, string>) {
  const proc = Bun.spawn([process.execPath, "run", "src/cli.ts", ...args], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? tmpdir(), LOG_LEVEL: "warn", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [exitCode, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { exitCode, stdout, stderr, stderrLines: stderr.split("\n").filter((l) => l.trim()) };
}

/** Users, products, an order with its item and idempotency key, sessions, a throttle row. */
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
    sql`insert into products (name, description, price, stock) values ('Lamp', 'A lamp', '19.90', 10), ('Desk', null, '250.00', 3), ('Chair', 'Tab\there', '0.10', 0) returning id`,
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

/** Inserts, updates and deletes (with cascades) after the full backup. */
async function change(db: Database, ids: Awaited<ReturnType<typeof seed>>) {
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
  await db.execute(sql`update products set stock = stock - 1, price = '21.00' where id = ${ids.products[1]}`);
  await db.execute(sql`delete from orders where id = ${ids.order}`);
  await db.execute(sql`delete from sessions where user_id = ${ids.bob}`);
  await db.execute(sql`update login_throttle set failures = failures + 1`);
  await db.execute(
    sql`insert into login_throttle (key, failures, window_started_at, expires_at) values ('email:x@example.com', 1, '2026-11-25 00:00:00', '2026-11-25 00:15:00')`,
  );
}

const queryOn =
  (db: Database): Query =>
  (text) =>
    queryRows(db, sql.raw(text)) as never;
const statesOf = async (db: Database) => tableStates(queryOn(db), await describeTables(queryOn(db)));

describe("restore: units", () => {
  test("pg_restore's session settings become transaction-local", () => {
    const script =
      "SET statement_timeout = 0;\nSET LOCAL lock_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\nCREATE TABLE public.x ();";
    const local = localiseSettings(script);
    expect(local).toContain("SET LOCAL statement_timeout = 0;");
    expect(local).toContain("SET LOCAL lock_timeout = 0;");
    expect(local).not.toContain("LOCAL LOCAL");
    expect(local).toContain("set_config('search_path', '', true)");
    expect(local).toContain("CREATE TABLE public.x ();");
  });

  test("a backup id names its chain up to itself; latest is the newest chain; unknown is nothing", () => {
    const m = (id: string, kind: Manifest["kind"], chain: string, at: string) =>
      ({ id, kind, chain, createdAt: at, engine: "postgres" }) as Manifest;
    const all = [
      m("f1", "full", "f1", "1"),
      m("i1", "incremental", "f1", "2"),
      m("i2", "incremental", "f1", "3"),
      m("f2", "full", "f2", "4"),
    ];
    expect(chainFor(all, "i1").map((x) => x.id)).toEqual(["f1", "i1"]);
    expect(chainFor(all, "i2").map((x) => x.id)).toEqual(["f1", "i1", "i2"]);
    expect(chainFor(all, "latest").map((x) => x.id)).toEqual(["f2"]);
    expect(chainFor(all, "nope")).toEqual([]);
  });
});

describe.if(onPostgres)("restore: Postgres through PgBouncer (transaction mode)", async () => {
  const handle = onPostgres ? await getTestDatabase() : undefined;
  const pooledUrl = handle?.url ?? "";
  const dbName = pooledUrl ? new URL(pooledUrl).pathname.slice(1) : "";
  const directServer = process.env.TEST_DIRECT_DATABASE_URL;
  const directUrl = directServer ? withDatabaseName(directServer, dbName) : undefined;
  const created: string[] = [];
  afterAll(async () => {
    if (!onPostgres) return;
    const admin = await createPostgresDatabase({ url: directServer ?? pooledUrl, poolMax: 1, prepare: false });
    for (const name of created) await admin.db.execute(sql.raw(`drop database if exists "${name}" with (force)`));
    await admin.close();
  });

  /** A new, empty database on the same server; its URL through the pooler. */
  async function emptyDatabase(label: string) {
    const name = `${dbName}_${label}_${Math.random().toString(36).slice(2, 7)}`;
    const admin = await createPostgresDatabase({ url: pooledUrl, poolMax: 1, prepare: false });
    await admin.db.execute(sql.raw(`create database "${name}"`));
    await admin.close();
    created.push(name);
    return withDatabaseName(pooledUrl, name);
  }

  /** Many concurrent transactions through the pooler, so they cover its server connections. */
  async function poolSettings() {
    const many = await createPostgresDatabase({ url: pooledUrl, poolMax: 40, prepare: false });
    try {
      let release: () => void = () => {};
      const gate = new Promise<void>((r) => (release = r));
      let seen = 0;
      const results = Promise.all(
        Array.from({ length: 40 }, () =>
          many.sql!.begin(async (tx) => {
            const [row] = await tx.unsafe<{ search_path: string }[]>("select current_setting('search_path') as search_path");
            if (++seen === 40) release();
            await gate;
            return row;
          }),
        ),
      );
      setTimeout(() => release(), 5_000);
      return await results;
    } finally {
      await many.close();
    }
  }

  for (const mode of ["without DATABASE_DIRECT_URL", "with DATABASE_DIRECT_URL"] as const) {
    const withDirect = mode === "with DATABASE_DIRECT_URL";
    test.skipIf(withDirect && !directUrl)(
      `${mode}: full → changes → incremental → restore-verify; restore latest --to a new database is identical and serves`,
      async () => {
        await resetDatabase(handle!);
        const ids = await seed(handle!.db);
        const dir = await tempDir();
        const clock = createTestClock(new Date("2026-11-25T02:00:00Z"));
        const base = createTestDeps(handle!.db, { clock });
        const env = { BACKUP_DIR: dir, DATABASE_URL: pooledUrl, ...(withDirect ? { DATABASE_DIRECT_URL: directUrl } : {}) };
        const deps: JobDeps = { ...base, env: { ...base.env, ...env }, handle: handle! };

        const full = await runBackupFull(deps);
        expect(full).toMatchObject({ ok: true, backup: { kind: "full" } });
        // pg_dump only with a direct connection; a rows file through the pooler.
        expect(String((full.backup as { file: string }).file)).toEndWith(withDirect ? ".dump" : ".rows.ndjson.gz");
        await change(handle!.db, ids);
        clock.advance(6 * 3600);
        const inc = await runBackupIncremental(deps);
        expect(inc).toMatchObject({ ok: true, backup: { kind: "incremental" } });
        expect(inc.fellBackToFull).toBeUndefined();

        const verified = await runRestoreVerify(deps);
        expect(verified).toMatchObject({ ok: true, checkpoint: expect.any(String) });

        const target = await emptyDatabase(withDirect ? "direct" : "pooled");
        const restored = await cli(["restore", "latest", "--to", target], {
          BACKUP_DIR: dir,
          DATABASE_URL: pooledUrl,
          ...(withDirect ? { DATABASE_DIRECT_URL: directUrl! } : {}),
        });
        expect(restored.stderr).toBe("");
        expect(restored.exitCode).toBe(0);
        expect(JSON.parse(restored.stdout.trim().split("\n").at(-1)!)).toMatchObject({
          ok: true,
          // The full, the incremental and restore-verify's checkpoint (checksummed, so `latest` is checked row by row).
          chain: [expect.any(String), expect.any(String), verified.checkpoint],
        });

        const copy = await createPostgresDatabase({ url: target, poolMax: 2, prepare: false });
        try {
          const [source, restoredStates] = await Promise.all([statesOf(handle!.db), statesOf(copy.db)]);
          for (const t of ["users", "products", "orders", "order_items", "sessions", "login_throttle", "order_idempotency_keys"]) {
            expect({ table: t, ...restoredStates[t] }).toEqual({ table: t, ...source[t] });
          }
        } finally {
          await copy.close();
        }

        // Nothing the restore did is left on the pooler's server connections.
        for (const row of await poolSettings()) expect(row.search_path).toBe('"$user", public');

        // The service starts on the restored database and serves what was backed up.
        const server = await startServer({
          env: { DATABASE_URL: target, JWT_SECRET: TEST_JWT_SECRET, DATABASE_PREPARE: String(prepareStatements), DATABASE_POOL_MAX: "3" },
        });
        try {
          const res = await fetch(`${server.baseUrl}/trpc/products.list?input=${encodeURIComponent(JSON.stringify({ limit: 10 }))}`);
          expect(res.status).toBe(200);
          const body = (await res.json()) as { result: { data: { items: { name: string; price: string }[] } } };
          expect(body.result.data.items.map((p) => p.name).sort()).toEqual(["Chair", "Desk", "Lamp"]);
          expect(body.result.data.items.find((p) => p.name === "Desk")?.price).toBe("21.00");
        } finally {
          expect(await server.stop()).toBe(0);
        }
      },
    );
  }

  test("errors: a non-empty target is refused with one line and left as it was; --force replaces it", async () => {
    await resetDatabase(handle!);
    await seed(handle!.db);
    const dir = await tempDir();
    const base = createTestDeps(handle!.db);
    const deps: JobDeps = { ...base, env: { ...base.env, BACKUP_DIR: dir, DATABASE_URL: pooledUrl }, handle: handle! };
    expect((await runBackupFull(deps)).ok).toBe(true);
    const before = await statesOf(handle!.db);

    await handle!.db.execute(sql`update products set stock = 42`);
    const changed = await statesOf(handle!.db);
    const refused = await cli(["restore", "latest", "--to", pooledUrl], { BACKUP_DIR: dir });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderrLines).toHaveLength(1);
    expect(refused.stderrLines[0]).toContain("not empty");
    expect(refused.stderrLines[0]).toContain("--force");
    expect(await statesOf(handle!.db)).toEqual(changed);

    const forced = await cli(["restore", "latest", "--to", pooledUrl, "--force"], { BACKUP_DIR: dir });
    expect(forced.exitCode).toBe(0);
    expect(await statesOf(handle!.db)).toEqual(before);
  });

  test("errors: an unknown backup id, or no backups at all, is one line", async () => {
    const dir = await tempDir();
    const target = await emptyDatabase("none");
    const none = await cli(["restore", "latest", "--to", target], { BACKUP_DIR: dir });
    expect(none.exitCode).toBe(1);
    expect(none.stderrLines).toEqual([`no Postgres backup in BACKUP_DIR ${dir}`]);
    const usage = await cli(["restore"], { BACKUP_DIR: dir });
    expect(usage.exitCode).toBe(1);
    expect(usage.stderrLines[0]).toContain("usage: npm run restore");
  });

  test("security: the target URL's password never reaches the output of a failed restore", async () => {
    const dir = await tempDir();
    const bad = new URL(pooledUrl);
    bad.password = "s3cret-pw";
    bad.port = "1";
    const r = await cli(["restore", "latest", "--to", bad.toString()], { BACKUP_DIR: dir });
    expect(r.exitCode).toBe(1);
    expect(r.stdout + r.stderr).not.toContain("s3cret-pw");
  });

  test("migrations need only the database URL (no JWT_SECRET), through the pooler", async () => {
    const r = await cli(["migrate"], { DATABASE_URL: pooledUrl });
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
  });
});

describe.skipIf(onPostgres)("restore: the embedded default (PGlite)", () => {
  test("a backup restored into an empty DATA_DIR holds the same data, and a non-empty DATA_DIR is refused", async () => {
    const source = await tempDir("restore-src-");
    const seeded = await cli(["seed"], { DATA_DIR: source });
    expect(seeded.exitCode).toBe(0);
    const backup = await cli(["job", "backup-full"], { DATA_DIR: source });
    expect(backup.exitCode).toBe(0);
    const products = (JSON.parse(backup.stdout.trim().split("\n").at(-1)!) as { backup: { rows: Record<string, number> } }).backup.rows
      .products;
    expect(products).toBeGreaterThan(0);

    const target = join(await tempDir("restore-dst-"), "data");
    const restored = await cli(["restore", "latest"], { DATA_DIR: target, BACKUP_DIR: join(source, "backups") });
    expect(restored.stderr).toBe("");
    expect(restored.exitCode).toBe(0);
    expect(JSON.parse(restored.stdout.trim().split("\n").at(-1)!)).toMatchObject({ ok: true, tables: { products } });
    expect(await readdir(join(target, "pgdata"))).toContain("PG_VERSION");

    const again = await cli(["restore", "latest"], { DATA_DIR: target, BACKUP_DIR: join(source, "backups") });
    expect(again.exitCode).toBe(1);
    expect(again.stderrLines).toHaveLength(1);
    expect(again.stderrLines[0]).toContain("DATA_DIR already holds a database");

    // The service starts on the restored DATA_DIR and serves the catalog that was backed up.
    const server = await startServer({ dataDir: target });
    try {
      const res = await fetch(`${server.baseUrl}/trpc/products.list?input=${encodeURIComponent(JSON.stringify({ limit: 100 }))}`);
      const body = (await res.json()) as { result: { data: { items: unknown[] } } };
      expect(body.result.data.items).toHaveLength(products);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
});
