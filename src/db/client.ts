import type { PGlite } from "@electric-sql/pglite";
import type { SQL } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import type { StatementObserver } from "../observability/statements";
import { allowServerPrepare } from "./prepared";
import type { ReplicaHealth } from "./read-replica";
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
  /** The embedded database's DATA_DIR lock, held while the handle is open (src/bootstrap.ts). */
  lock?: import("./data-dir-lock").DataDirLock;
  /** DATABASE_READ_URL's replica: catalog reads that fall back to the primary (src/db/read-replica.ts). */
  replica?: { db: Database; health: ReplicaHealth; sql: import("postgres").Sql };
  close(): Promise<void>;
}

export interface PostgresOptions {
  url: string;
  poolMax: number;
  prepare: boolean;
  /** Times (and traces) every statement Drizzle sends; absent, the client is used as it is. */
  statements?: StatementObserver;
  /** DATABASE_READ_URL: a streaming replica for the catalog reads; the handle then carries `replica`. */
  readUrl?: string;
  /** Its pool; `poolMax` when unset. */
  readPoolMax?: number;
  /** DATABASE_READ_MAX_LAG_SECONDS. */
  readMaxLagSeconds?: number;
}

// A replica that does not answer should cost a catalog read little before it falls back to the
// primary: 5 s still covers a Neon read replica's compute waking from scale-to-zero.
const REPLICA_CONNECT_TIMEOUT_S = 5;

/** postgres.js behind Drizzle. Nothing connects until the first query. */
export async function createPostgresDatabase(opts: PostgresOptions): Promise<DatabaseHandle> {
  const { default: postgres } = await import("postgres");
  const { drizzle } = await import("drizzle-orm/postgres-js");
  const connect = (url: string, max: number, connectTimeout: number) =>
    postgres(url, {
      max,
      // Transaction-mode poolers without prepared-statement support need unnamed statements.
      prepare: opts.prepare,
      connect_timeout: connectTimeout,
      idle_timeout: 30,
      // Recycle connections so role-level settings (statement_timeout) reach every connection.
      max_lifetime: 60 * 30,
      onnotice: () => {},
    });
  const observe = async (raw: import("postgres").Sql) =>
    opts.statements ? await observed((m) => m.observePostgresClient(raw, opts.statements!)) : raw;
  const sql = connect(opts.url, opts.poolMax, 10);
  const client = await observe(sql);
  const db = drizzle(client, { schema }) as unknown as Database;
  if (opts.prepare) allowServerPrepare(db);
  if (!opts.readUrl) return { db, kind: "postgres", sql, close: () => sql.end({ timeout: 5 }) };

  const { readFallbackClient, replicaHealthFor } = await import("./read-replica");
  const replicaSql = connect(opts.readUrl, opts.readPoolMax ?? opts.poolMax, REPLICA_CONNECT_TIMEOUT_S);
  const health = replicaHealthFor(opts.readUrl, { maxLagSeconds: opts.readMaxLagSeconds });
  const readDb = drizzle(readFallbackClient(await observe(replicaSql), client, health), { schema }) as unknown as Database;
  if (opts.prepare) allowServerPrepare(readDb);
  return {
    db,
    kind: "postgres",
    sql,
    replica: { db: readDb, health, sql: replicaSql },
    close: async () => {
      await Promise.all([sql.end({ timeout: 5 }), replicaSql.end({ timeout: 5 })]);
    },
  };
}

/** The embedded default: PGlite persisted under `dataDir` (in memory when `dataDir` is undefined). */
export async function createPgliteDatabase(dataDir: string | undefined, statements?: StatementObserver): Promise<DatabaseHandle> {
  const { PGlite } = await import("@electric-sql/pglite");
  const { pg_trgm } = await import("@electric-sql/pglite/contrib/pg_trgm");
  const { drizzle } = await import("drizzle-orm/pglite");
  const pglite = await PGlite.create({ dataDir, extensions: { pg_trgm } });
  const client = statements ? await observed((m) => m.observePgliteClient(pglite, statements)) : pglite;
  const db = drizzle(client, { schema }) as unknown as Database;
  return { db, kind: "pglite", pglite, close: () => pglite.close() };
}

/** Rows of a raw statement, whichever driver ran it (postgres.js returns an array, PGlite `{ rows }`). */
export async function queryRows<T extends Record<string, unknown>>(db: Database, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown;
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

// Loaded only when statements are observed, so a host without observability never imports it.
const observed = async <T>(use: (m: typeof import("../observability/statements")) => T): Promise<T> =>
  use(await import("../observability/statements"));
