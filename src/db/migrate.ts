import { fileURLToPath } from "node:url";
import { sql } from "drizzle-orm";
import { readMigrationFiles } from "drizzle-orm/migrator";
import { type Database, queryRows } from "./client";

export const migrationsFolder = fileURLToPath(new URL("../../drizzle", import.meta.url));

// Any constant works; it only has to be the same for every instance of this service.
const MIGRATION_LOCK_ID = 727_001;

/**
 * Applies pending drizzle-kit migrations in one transaction under an advisory lock, so two
 * instances starting together do not both apply them. The bookkeeping table is drizzle-kit's
 * own (`drizzle.__drizzle_migrations`), so `drizzle-kit migrate` and this agree.
 * A transaction-level lock is used because session locks do not survive a transaction-mode pooler.
 */
export async function runMigrations(db: Database): Promise<{ applied: number }> {
  const migrations = readMigrationFiles({ migrationsFolder });
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${MIGRATION_LOCK_ID})`);
    await tx.execute(sql`create schema if not exists drizzle`);
    await tx.execute(sql`create table if not exists drizzle.__drizzle_migrations (
      id serial primary key, hash text not null, created_at bigint)`);
    const [last] = await queryRows<{ created_at: string | number | null }>(
      tx,
      sql`select created_at from drizzle.__drizzle_migrations order by created_at desc limit 1`,
    );
    const lastMillis = last?.created_at == null ? -1 : Number(last.created_at);
    let applied = 0;
    for (const migration of migrations) {
      if (migration.folderMillis <= lastMillis) continue;
      for (const statement of migration.sql) {
        if (statement.trim()) await tx.execute(sql.raw(statement));
      }
      await tx.execute(
        sql`insert into drizzle.__drizzle_migrations (hash, created_at) values (${migration.hash}, ${migration.folderMillis})`,
      );
      applied++;
    }
    return { applied };
  });
}

/**
 * Every migration, run through a raw query function inside the caller's transaction, on a
 * database that has none yet (a restore target). The bookkeeping matches runMigrations', so the
 * service starting on the restored database applies nothing twice.
 */
export async function applyMigrationsToEmpty(exec: (text: string, params?: unknown[]) => Promise<unknown>): Promise<number> {
  const migrations = readMigrationFiles({ migrationsFolder });
  await exec("create schema if not exists drizzle");
  await exec("create table if not exists drizzle.__drizzle_migrations (id serial primary key, hash text not null, created_at bigint)");
  for (const migration of migrations) {
    for (const statement of migration.sql) if (statement.trim()) await exec(statement);
    await exec("insert into drizzle.__drizzle_migrations (hash, created_at) values ($1, $2)", [migration.hash, migration.folderMillis]);
  }
  return migrations.length;
}

/**
 * Makes the server enforce the statement timeout for this role on this database. A startup
 * parameter would not survive PgBouncer in transaction mode; a role setting applies to every
 * server connection the pooler opens, whoever it is lent to.
 */
export async function applyStatementTimeout(db: Database, timeoutMs: number): Promise<void> {
  const [row] = await queryRows<{ role_settings: string | null }>(
    db,
    sql`select array_to_string(s.setconfig, ',') as role_settings
          from pg_db_role_setting s
          join pg_roles r on r.oid = s.setrole
          join pg_database d on d.oid = s.setdatabase
         where r.rolname = current_user and d.datname = current_database()`,
  );
  if (row?.role_settings?.split(",").includes(`statement_timeout=${timeoutMs}ms`)) return;
  await db.execute(
    sql.raw(`do $$ begin execute format('alter role %I in database %I set statement_timeout = %L',
      current_user, current_database(), '${Math.trunc(timeoutMs)}ms'); end $$`),
  );
}
