// DATABASE_QUERY_TIMEOUT_MS must hold through PgBouncer in transaction mode, where a startup
// parameter or a session SET does not follow the client. applyStatementTimeout stores it as a
// role-in-database setting, which every server connection opened afterwards picks up.
import { afterAll, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createPostgresDatabase, queryRows } from "../../src/db/client";
import { applyStatementTimeout } from "../../src/db/migrate";
import { sqlState } from "../../src/errors";
import { onPostgres, TEST_DATABASE_URL, withDatabaseName } from "../support/db";

/** Set by .ci/run: the Postgres server itself, next to TEST_DATABASE_URL (PgBouncer). */
const DIRECT_URL = process.env.TEST_DIRECT_DATABASE_URL || undefined;

const created: string[] = [];
afterAll(async () => {
  if (!TEST_DATABASE_URL || created.length === 0) return;
  const admin = await createPostgresDatabase({ url: TEST_DATABASE_URL, poolMax: 1, prepare: false });
  for (const name of created) await admin.db.execute(sql.raw(`drop database if exists "${name}" with (force)`));
  await admin.close();
}, 60_000);

async function createFreshDatabase(): Promise<string> {
  const name = `timeout_${process.pid}_${Date.now().toString(36)}`;
  const admin = await createPostgresDatabase({ url: TEST_DATABASE_URL!, poolMax: 1, prepare: false });
  await admin.db.execute(sql.raw(`create database "${name}"`));
  await admin.close();
  created.push(name);
  return name;
}

describe.if(onPostgres)("statement timeout through the pooler", () => {
  // The setting is made on the server directly, before PgBouncer has any connection to this
  // database, so every server connection the pooler opens is one made after it.
  test.if(DIRECT_URL !== undefined)(
    "a query running longer than the role's statement_timeout is cancelled with 57014",
    async () => {
      const name = await createFreshDatabase();
      const direct = await createPostgresDatabase({ url: withDatabaseName(DIRECT_URL!, name), poolMax: 1, prepare: false });
      await applyStatementTimeout(direct.db, 300);
      // Idempotent: a second start with the same value changes nothing.
      await applyStatementTimeout(direct.db, 300);
      const settings = await queryRows<{ setconfig: string[] | string }>(
        direct.db,
        sql`select s.setconfig from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase
             where d.datname = current_database()`,
      );
      expect(settings).toHaveLength(1);
      expect(String(settings[0].setconfig)).toContain("statement_timeout=300ms");
      await direct.close();

      const pooled = await createPostgresDatabase({
        url: withDatabaseName(TEST_DATABASE_URL!, name),
        poolMax: 2,
        prepare: process.env.DATABASE_PREPARE !== "false",
      });
      try {
        const [shown] = await queryRows<{ statement_timeout: string }>(pooled.db, sql`show statement_timeout`);
        expect(shown.statement_timeout).toBe("300ms");
        await pooled.db.execute(sql`select pg_sleep(0.01)`); // short work is unaffected
        const outcome = await pooled.db.execute(sql`select pg_sleep(2)`).then(
          () => "finished",
          (error) => sqlState(error),
        );
        expect(outcome).toBe("57014");
        // The pooled connection is still usable afterwards.
        expect(await queryRows(pooled.db, sql`select 1 as one`)).toEqual([{ one: 1 }]);
      } finally {
        await pooled.close();
      }
    },
    30_000,
  );

  test("changing DATABASE_QUERY_TIMEOUT_MS replaces the stored value", async () => {
    const name = await createFreshDatabase();
    const db = await createPostgresDatabase({ url: withDatabaseName(TEST_DATABASE_URL!, name), poolMax: 1, prepare: false });
    try {
      await applyStatementTimeout(db.db, 300);
      await applyStatementTimeout(db.db, 45_000);
      const rows = await queryRows<{ setconfig: string[] | string }>(
        db.db,
        sql`select s.setconfig from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase
             where d.datname = current_database()`,
      );
      expect(rows).toHaveLength(1);
      expect(String(rows[0].setconfig)).toContain("statement_timeout=45000ms");
      expect(String(rows[0].setconfig)).not.toContain("300ms");
    } finally {
      await db.close();
    }
  });
});
