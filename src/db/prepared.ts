import { fillPlaceholders, type Placeholder, type SQL, sql } from "drizzle-orm";
import { type Database, queryRows } from "./client";
import type { LoginStatement } from "./functions";

// Building a query with Drizzle costs tens of microseconds of CPU (the benchmark profile put it at
// over half of the app's CPU on products.byId); a prepared Drizzle query is built once and then
// only fills its placeholders. Prepared queries are kept per database object.
const cache = new WeakMap<object, Map<string, unknown>>();
const serverPrepare = new WeakSet<object>();

/**
 * Marks a database whose connections may keep server-side prepared statements
 * (DATABASE_PREPARE=true). Elsewhere (PgBouncer < 1.21 in transaction mode) a Drizzle query
 * prepared with a name would make postgres.js prepare it on the server, so no name is given.
 */
export function allowServerPrepare(db: Database): void {
  serverPrepare.add(db);
}

/** The query built by `build`, prepared once for this database and reused after that. */
export function preparedQuery<P>(db: Database, key: string, build: () => { prepare(name: string): P }): P {
  let queries = cache.get(db);
  if (!queries) {
    queries = new Map();
    cache.set(db, queries);
  }
  let query = queries.get(key) as P | undefined;
  if (!query) {
    const builder = build();
    const name = serverPrepare.has(db) ? key.replace(/[^A-Za-z0-9_]/g, "_") : undefined;
    query = (builder.prepare as (name?: string) => P).call(builder, name);
    queries.set(key, query);
  }
  return query;
}

/** Whether this database's connections may keep server-side prepared statements. */
export function preparesOnServer(db: Database): boolean {
  return serverPrepare.has(db);
}

type Preparable<T> = PromiseLike<T> & { prepare(name: string): { execute(): Promise<T> } };

/**
 * Runs a query built inside a transaction; with server-side prepared statements allowed it goes
 * as one (postgres.js keeps it per connection by its text, so each shape is parsed and planned
 * once per connection, not per call). The name is only Drizzle's requirement.
 */
export function sendQuery<T>(query: Preparable<T>, onServer: boolean): PromiseLike<T> {
  return onServer ? query.prepare("q").execute() : query;
}

/** A statement as Drizzle renders it: its text and its parameters in order. */
type Rendered = { sql: string; params: unknown[] };

type RawSession = {
  session: {
    prepareQuery(query: unknown, fields: undefined, name: string | undefined, arrayMode: boolean): { execute(): Promise<unknown> };
  };
  dialect: { sqlToQuery(sql: SQL): unknown };
};

/**
 * A hand-written statement (what `db.execute` sends), as a server-side prepared statement where
 * the database allows them (DATABASE_PREPARE=true), else as `db.execute` sends it: unnamed,
 * parsed and planned on every call. `db.execute` never names its statement, so without this the
 * sign-in's two statements were planned on every call even straight to Postgres (about 0.3 ms of
 * Postgres CPU per sign-in, measured with pg_stat_statements: plans = calls). The name is only
 * Drizzle's switch: postgres.js keys the prepared statement by its text, per connection.
 */
export async function runStatement<T extends Record<string, unknown>>(db: Database, query: SQL): Promise<T[]> {
  if (!serverPrepare.has(db)) return queryRows<T>(db, query);
  const { dialect } = db as unknown as RawSession;
  return sendRendered<T>(db, dialect.sqlToQuery(query) as Rendered, true);
}

/**
 * Sends a statement already rendered to text and parameters, on a database or a transaction:
 * server-prepared when `onServer` (a transaction object is not the database `allowServerPrepare`
 * marked, so its caller says), else unnamed. The rows come back as an array on either driver.
 */
export async function sendRendered<T>(db: Database, query: Rendered, onServer: boolean): Promise<T[]> {
  const { session } = db as unknown as RawSession;
  const result = (await session.prepareQuery(query, undefined, onServer ? "q" : undefined, false).execute()) as unknown;
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

/**
 * Sends one of the sign-in's statements (src/db/functions.ts) with its values by parameter name:
 * where the connection keeps prepared statements, its body as one (planned once per connection,
 * and no function call around it); elsewhere (PgBouncer 1.18, PGlite) the call of the migration's
 * function, whose body the server keeps planned instead.
 */
export async function sendLoginStatement<T, N extends string>(
  db: Database,
  statement: LoginStatement<N>,
  values: Record<N, unknown>,
): Promise<T[]> {
  const onServer = serverPrepare.has(db);
  const params = statement.params.map((name) => values[name]);
  return sendRendered<T>(db, { sql: onServer ? statement.statement : statement.call, params }, onServer);
}

const renderedStatements = new Map<string, Rendered>();

/**
 * A hand-written statement whose values are `sql.placeholder`s, rendered by Drizzle once per
 * process and then sent with each call's values (as `runStatement` sends it: server-prepared
 * where allowed). Building a statement of several CTEs through Drizzle's builders costs tens of
 * microseconds per CTE; the sign-in sends two such statements per call (the profile of
 * `npm run bench -- login --profile` had Drizzle's SQL building at 30 % of the service's busy
 * samples before this). `build` must give the same text every time: all that varies is a
 * placeholder, never the shape.
 */
export function statementTemplate(key: string, build: (db: Database) => SQL) {
  return async <T extends Record<string, unknown>>(
    db: Database,
    values: Record<string, unknown>,
    // A transaction object is not the database `allowServerPrepare` marked: its caller says.
    onServer = serverPrepare.has(db),
  ): Promise<T[]> => {
    let rendered = renderedStatements.get(key);
    if (!rendered) {
      rendered = (db as unknown as RawSession).dialect.sqlToQuery(build(db)) as Rendered;
      renderedStatements.set(key, rendered);
    }
    return sendRendered<T>(db, { sql: rendered.sql, params: fillPlaceholders(rendered.params, values) }, onServer);
  };
}

/** A placeholder named `<prefix>.<key>` for each column key of a row (see `rowValues`). */
export function rowPlaceholders<K extends string>(prefix: string, keys: readonly K[]): Record<K, Placeholder> {
  return Object.fromEntries(keys.map((k) => [k, sql.placeholder(`${prefix}.${k}`)])) as Record<K, Placeholder>;
}

/** The values that fill `rowPlaceholders(prefix, …)` for one row. */
export function rowValues(prefix: string, row: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [`${prefix}.${k}`, v]));
}
