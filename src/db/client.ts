import type { PGlite } from "@electric-sql/pglite";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import type { SQL } from "drizzle-orm";
import { allowServerPrepare } from "./prepared";
import * as schema from "./schema";

export type Schema = typeof schema;
/** What every service takes first: a Drizzle database or transaction on either driver. */
export type Database = PgDatabase<PgQueryResultHKT, Schema>;

export interface DatabaseHandle {
  db: Database;
  kind: "postgres" | "pglite";
  /** The embedded engine, for the backup jobs (dumpDataDir); absent on Postgres. */
  pglite?: PGlite;
  /** The postgres.js client, for the few places that must bypass Drizzle (VACUUM). */
  sql?: import("postgres").Sql;
  close(): Promise<void>;
}

export interface PostgresOptions {
  url: string;
  poolMax: number;
  prepare: boolean;
}

/** postgres.js behind Drizzle. Nothing connects until the first query. */
export async function createPostgresDatabase(opts: PostgresOptions): Promise<DatabaseHandle> {
  const { default: postgres } = await import("postgres");
  const { drizzle } = await import("drizzle-orm/postgres-js");
  const sql = postgres(opts.url, {
    max: opts.poolMax,
    // Transaction-mode poolers without prepared-statement support need unnamed statements.
    prepare: opts.prepare,
    connect_timeout: 10,
    idle_timeout: 30,
    // Recycle connections so role-level settings (statement_timeout) reach every connection.
    max_lifetime: 60 * 30,
    onnotice: () => {},
  });
  const db = drizzle(sql, { schema }) as unknown as Database;
  if (opts.prepare) allowServerPrepare(db);
  return { db, kind: "postgres", sql, close: () => sql.end({ timeout: 5 }) };
}

/** The embedded default: PGlite persisted under `dataDir` (in memory when `dataDir` is undefined). */
export async function createPgliteDatabase(dataDir: string | undefined): Promise<DatabaseHandle> {
  const { PGlite } = await import("@electric-sql/pglite");
  const { pg_trgm } = await import("@electric-sql/pglite/contrib/pg_trgm");
  const { drizzle } = await import("drizzle-orm/pglite");
  const pglite = await PGlite.create({ dataDir, extensions: { pg_trgm } });
  const db = drizzle(pglite, { schema }) as unknown as Database;
  return { db, kind: "pglite", pglite, close: () => pglite.close() };
}

/** Rows of a raw statement, whichever driver ran it (postgres.js returns an array, PGlite `{ rows }`). */
export async function queryRows<T extends Record<string, unknown>>(db: Database, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown;
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}
