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

  // Without a direct URL (only the pooler): apply through PgBouncer, end the server connections
  // that predate the setting, and check inside one transaction (one server connection) that the
  // connection carries the setting before running the long query on it.
  test.if(DIRECT_URL === undefined)(
    "through the pooler only: a fresh server connection cancels a long query with 57014",
    async () => {
      const name = await createFreshDatabase();
      const pooled = await createPostgresDatabase({ url: withDatabaseName(TEST_DATABASE_URL!, name), poolMax: 1, prepare: false });
      const admin = await createPostgresDatabase({ url: TEST_DATABASE_URL!, poolMax: 1, prepare: false });
      try {
        await applyStatementTimeout(pooled.db, 300);
        await admin.db.execute(sql`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${name}`);
        let outcome = "no connection with the setting";
        for (let attempt = 0; attempt < 20 && outcome !== "57014" && outcome !== "finished"; attempt++) {
          outcome = await pooled
            .sql!.begin(async (tx) => {
              const [row] = await tx`show statement_timeout`;
              if (row.statement_timeout !== "300ms") return "an older server connection";
              return tx`select pg_sleep(2)`.then(
                () => "finished",
                (error) => String((error as { code?: string }).code),
              );
            })
            .catch((error) => {
              const code = (error as { code?: string }).code;
              // The cancelled statement aborts the transaction; anything else is a dropped connection.
              return code === "57014" ? "57014" : `connection error ${code}`;
            });
        }
        expect(outcome).toBe("57014");
      } finally {
        await pooled.close();
        await admin.close();
      }
    },
    60_000,
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
