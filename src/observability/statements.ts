// Per-statement instrumentation at the driver boundary: Drizzle hands every statement to the
// postgres.js or PGlite client, so wrapping the client (not the services) sees them all. Without
// an observer the clients are used as they are and nothing here runs.
import { SpanKind, SpanStatusCode, type Tracer } from "@opentelemetry/api";
import { sqlState } from "../errors";
import type { Logger } from "../lib/logger";
import { callScope } from "./context";
import type { Metrics } from "./metrics";

export interface StatementObserver {
  run<T>(text: string, execute: () => Promise<T>, rowsOf: (result: T) => number | undefined): Promise<T>;
}

export interface StatementObserverOptions {
  metrics?: Metrics;
  tracer?: Tracer;
  logger: Logger;
  /** LOG_SLOW_QUERY_MS: statements slower than this get a warn line. */
  slowMs: number;
}

const SHAPE_CACHE_MAX = 1000;
const SHAPE_MAX_CHARS = 2000;
const shapes = new Map<string, string>();

/**
 * The statement's shape: whitespace collapsed, and any literal the text itself carries (quoted
 * strings, numbers) replaced by `?`. Drizzle sends values as $n parameters, which are never read
 * here; this only guards against a literal that was written into SQL text.
 */
export function statementShape(text: string): string {
  let shape = shapes.get(text);
  if (shape === undefined) {
    shape = text
      .replace(/'(?:[^']|'')*'/g, "'?'")
      .replace(/(?<![\w$."])-?\d+(?:\.\d+)?(?![\w"])/g, "?")
      .replace(/\s+/g, " ")
      .trim();
    if (shape.length > SHAPE_MAX_CHARS) shape = `${shape.slice(0, SHAPE_MAX_CHARS)}…`;
    if (shapes.size >= SHAPE_CACHE_MAX) shapes.clear();
    shapes.set(text, shape);
  }
  return shape;
}

const OPERATIONS = new Set(["select", "insert", "update", "delete", "with", "begin", "commit", "rollback", "savepoint", "release"]);

const operations = new Map<string, string>();

/** The statement's first keyword, from a closed set (a bounded metric label). */
export function statementOperation(text: string): string {
  let op = operations.get(text);
  if (op === undefined) {
    const m = /^\s*(?:\(\s*)?([A-Za-z]+)/.exec(text);
    const word = m ? m[1].toLowerCase() : "";
    op = OPERATIONS.has(word) ? word : "other";
    if (operations.size >= SHAPE_CACHE_MAX) operations.clear();
    operations.set(text, op);
  }
  return op;
}

export function createStatementObserver(opts: StatementObserverOptions): StatementObserver {
  const { metrics, tracer, logger, slowMs } = opts;
  const inFlight = metrics?.inFlight;

  const finish = (text: string, started: number, rows: number | undefined) => {
    const ms = performance.now() - started;
    metrics?.statement(statementOperation(text), ms / 1000);
    if (ms > slowMs) {
      const scope = callScope.getStore();
      logger.warn("slow statement", {
        requestId: scope?.requestId,
        procedure: scope?.procedure,
        ms: Math.round(ms),
        rows,
        statement: statementShape(text),
      });
    }
  };

  // Not an async function: one promise reaction per statement, not an extra frame and promise.
  const timed = <T>(text: string, execute: () => Promise<T>, rowsOf: (r: T) => number | undefined): Promise<T> => {
    const started = performance.now();
    if (inFlight) inFlight.statements++;
    return execute().then(
      (result) => {
        if (inFlight) inFlight.statements--;
        finish(text, started, rowsOf(result));
        return result;
      },
      (error: unknown) => {
        if (inFlight) inFlight.statements--;
        finish(text, started, undefined);
        throw error;
      },
    );
  };

  if (!tracer) return { run: timed };

  return {
    run<T>(text: string, execute: () => Promise<T>, rowsOf: (r: T) => number | undefined) {
      const operation = statementOperation(text);
      return tracer.startActiveSpan(
        operation === "other" ? "db" : operation.toUpperCase(),
        {
          kind: SpanKind.CLIENT,
          attributes: {
            "db.system.name": "postgresql",
            "db.operation.name": operation.toUpperCase(),
            "db.query.text": statementShape(text),
          },
        },
        async (span) => {
          try {
            const result = await timed(text, execute, rowsOf);
            const rows = rowsOf(result);
            if (rows !== undefined) span.setAttribute("db.response.returned_rows", rows);
            return result;
          } catch (error) {
            // The SQLSTATE only: driver messages can quote values.
            const code = sqlState(error);
            if (code) span.setAttribute("db.response.status_code", code);
            span.setStatus({ code: SpanStatusCode.ERROR, message: code ? `SQLSTATE ${code}` : "statement failed" });
            throw error;
          } finally {
            span.end();
          }
        },
      );
    },
  };
}

type PostgresClient = import("postgres").Sql;
type PgliteClient = import("@electric-sql/pglite").PGlite;

const rowsOfPostgres = (r: unknown) => {
  const count = (r as { count?: unknown } | null)?.count;
  return typeof count === "number" ? count : Array.isArray(r) ? r.length : undefined;
};
const rowsOfPglite = (r: unknown) => {
  const res = r as { rows?: unknown[]; affectedRows?: number } | null;
  return res?.affectedRows ?? res?.rows?.length;
};

/** A view of the postgres.js client for Drizzle whose `unsafe` statements go through `observer`. */
export function observePostgresClient(client: PostgresClient, observer: StatementObserver): PostgresClient {
  const wrap = (sql: PostgresClient): PostgresClient => {
    const unsafe = (text: string, params?: unknown[], options?: unknown) => {
      // Drizzle calls `.values()` on the query before awaiting it; the query only starts when awaited.
      let values = false;
      const lazy = {
        values() {
          values = true;
          return lazy;
        },
        // biome-ignore lint/suspicious/noThenProperty: the wrapper must stay a thenable, like the query it wraps
        then<R1, R2>(ok?: (v: unknown) => R1, fail?: (e: unknown) => R2) {
          return observer
            .run(
              text,
              () => {
                const q = sql.unsafe(text, params as never, options as never);
                return (values ? q.values() : q) as unknown as Promise<unknown>;
              },
              rowsOfPostgres,
            )
            .then(ok, fail);
        },
      };
      return lazy;
    };
    // An object that inherits the client (its options, parsers and methods: closures that do not
    // use `this`) with three methods of its own; no Proxy trap on every property Drizzle reads.
    const begin = sql.begin as unknown as (...a: unknown[]) => unknown;
    const savepoint = (sql as unknown as { savepoint?: (...a: unknown[]) => unknown }).savepoint;
    const inTx =
      (method: (...a: unknown[]) => unknown) =>
      (...args: unknown[]) => {
        const fn = args.pop() as (tx: PostgresClient) => unknown;
        return method(...args, (tx: PostgresClient) => fn(wrap(tx)));
      };
    return Object.assign(Object.create(sql) as object, {
      unsafe,
      begin: inTx(begin),
      ...(savepoint ? { savepoint: inTx(savepoint) } : {}),
    }) as unknown as PostgresClient;
  };
  return wrap(client);
}

/** The same for PGlite: `query` and `exec`, and both inside transactions. */
export function observePgliteClient(client: PgliteClient, observer: StatementObserver): PgliteClient {
  type Queryable = Pick<PgliteClient, "query" | "exec">;
  const wrap = <C extends Queryable>(target: C): C =>
    new Proxy(target, {
      get(t, prop) {
        if (prop === "query") {
          return (text: string, params?: unknown[], options?: unknown) =>
            observer.run(text, () => t.query(text, params as never, options as never), rowsOfPglite);
        }
        if (prop === "exec") {
          return (text: string, options?: unknown) =>
            observer.run(
              text,
              () => t.exec(text, options as never),
              (r) => (r as unknown[]).length,
            );
        }
        if (prop === "transaction") {
          return (fn: (tx: Queryable) => unknown) => (t as unknown as PgliteClient).transaction((tx) => fn(wrap(tx)) as never);
        }
        const value = Reflect.get(t, prop, t);
        return typeof value === "function" ? value.bind(t) : value;
      },
    });
  return wrap(client);
}
