// Loaded by bunfig.toml before every test file: after the whole run, drop this run's database.
import { afterAll } from "bun:test";
import { onPostgres, releaseTestDatabase } from "./db";

afterAll(async () => {
  await releaseTestDatabase();
  // Once per run (a preload's afterAll is global), so a green PGlite run is not read as full coverage.
  if (!onPostgres) {
    console.error(
      [
        "",
        "Postgres-only tests were skipped: this run used the embedded PGlite. To run them too:",
        "  TEST_DATABASE_URL=postgres://USER@HOST:PORT/postgres npm test",
        "(a role that may create databases; add DATABASE_PREPARE=false behind PgBouncer in transaction mode,",
        "and TEST_DIRECT_DATABASE_URL=<the server itself> for the statement-timeout and pg_dump tests),",
        "or `npm run ci`, which starts a throwaway Postgres 15 and PgBouncer. See docs/operations.md.",
      ].join("\n"),
    );
  }
});
