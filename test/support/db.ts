import { sql } from "drizzle-orm";
import { createPgliteDatabase, createPostgresDatabase, type DatabaseHandle } from "../../src/db/client";
import { applyStatementTimeout, runMigrations } from "../../src/db/migrate";
import { sqlState } from "../../src/errors";

/** Set by .ci/run (through PgBouncer) to run the suite on real Postgres instead of PGlite. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || undefined;
export const onPostgres = TEST_DATABASE_URL !== undefined;
export const prepareStatements = process.env.DATABASE_PREPARE !== "false";

let shared: Promise<TestDatabase> | undefined;
let createdDatabaseName: string | undefined;

export interface TestDatabase extends DatabaseHandle {
  /** The URL of this run's own database (Postgres only), for a server or a second pool. */
  url?: string;
}

/** A URL for another database on the same server as TEST_DATABASE_URL. */
export function withDatabaseName(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * Every test process gets its own freshly migrated database: a new database on the Postgres
 * server (so parallel runs and helpers never see each other's rows), or an in-memory PGlite.
 */
export function getTestDatabase(): Promise<TestDatabase> {
  shared ??= (async () => {
    if (!TEST_DATABASE_URL) {
      const handle = await createPgliteDatabase(undefined);
      await runMigrations(handle.db);
      return handle;
    }
    const name = `test_${process.pid}_${Date.now().toString(36)}`;
    createdDatabaseName = name;
    const admin = await createPostgresDatabase({ url: TEST_DATABASE_URL, poolMax: 1, prepare: false });
    await admin.db.execute(sql.raw(`create database "${name}"`));
    await admin.close();
    const url = withDatabaseName(TEST_DATABASE_URL, name);
    const handle = await createPostgresDatabase({ url, poolMax: 20, prepare: prepareStatements });
    await runMigrations(handle.db);
    await applyStatementTimeout(handle.db, 30_000);
    return { ...handle, url };
  })();
  return shared;
}

/** Empties every table; tests call it in beforeEach/beforeAll for a clean state. */
export async function resetDatabase(handle: DatabaseHandle): Promise<void> {
  // TRUNCATE locks its tables in list order; a statement of an earlier test that is still
  // running locks them in its join order, so the two can deadlock (seen once in CI: the session
  // lookup against this TRUNCATE). Postgres then cancels one of them; when it cancels this one,
  // the other has finished by the next attempt.
  for (let attempt = 1; ; attempt++) {
    try {
      await handle.db.execute(
        sql`truncate table audit_events, mail_outbox, account_tokens, session_chains, account_status, order_idempotency_keys, order_items, orders, sessions, login_throttle, products, users restart identity cascade`,
      );
      return;
    } catch (error) {
      if (attempt >= 3 || sqlState(error) !== "40P01") throw error;
    }
  }
}

/** Closes this process's test database and, on Postgres, drops it (run once after all tests). */
export async function releaseTestDatabase(): Promise<void> {
  if (!shared) return;
  const handle = await shared;
  shared = undefined;
  await handle.close();
  if (TEST_DATABASE_URL && createdDatabaseName) {
    const admin = await createPostgresDatabase({ url: TEST_DATABASE_URL, poolMax: 1, prepare: false });
    // FORCE: the pooler may still hold idle server connections to it.
    await admin.db.execute(sql.raw(`drop database if exists "${createdDatabaseName}" with (force)`));
    await admin.close();
  }
}
