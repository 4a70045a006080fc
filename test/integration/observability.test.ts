// The observability layers in process, on the suite's real database (PGlite, or Postgres through
// PgBouncer): the statement observer around either driver, the slow-statement log, and the
// error lines' request and trace ids with the real OTLP/HTTP exporter.
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createApp } from "../../src/app";
import { createPgliteDatabase, type Database, type DatabaseHandle } from "../../src/db/client";
import * as schema from "../../src/db/schema";
import { createLogger } from "../../src/lib/logger";
import { createObservability, type Observability } from "../../src/observability";
import { callScope } from "../../src/observability/context";
import { createMetrics } from "../../src/observability/metrics";
import {
  createStatementObserver,
  observePgliteClient,
  observePostgresClient,
  type StatementObserver,
} from "../../src/observability/statements";
import { createTestDeps, insertProducts } from "../support/app";
import { getTestDatabase } from "../support/db";

setDefaultTimeout(60_000);

const handle = await getTestDatabase();

/** The suite's database again, with its driver client seen through `observer`. */
async function observedDb(h: DatabaseHandle, observer: StatementObserver): Promise<Database> {
  if (h.kind === "pglite") {
    const { drizzle } = await import("drizzle-orm/pglite");
    return drizzle(observePgliteClient(h.pglite!, observer), { schema }) as unknown as Database;
  }
  const { drizzle } = await import("drizzle-orm/postgres-js");
  return drizzle(observePostgresClient(h.sql!, observer), { schema }) as unknown as Database;
}

function captureLog() {
  const lines: Record<string, unknown>[] = [];
  return { lines, logger: createLogger("debug", (l) => lines.push(JSON.parse(l))) };
}

const env = (over: Partial<Parameters<typeof createObservability>[0]> = {}) => ({
  METRICS: true,
  METRICS_TOKEN: undefined,
  LOG_SLOW_QUERY_MS: 500,
  OTEL_EXPORTER_OTLP_ENDPOINT: undefined,
  OTEL_SERVICE_NAME: "commerce-backend-test",
  ...over,
});

describe("statement observer (happy path)", () => {
  test("times every statement Drizzle sends, inside transactions too, and the gauges return to zero", async () => {
    const metrics = createMetrics({ poolMax: 1 });
    const { logger, lines } = captureLog();
    const db = await observedDb(handle, createStatementObserver({ metrics, logger, slowMs: Number.POSITIVE_INFINITY }));
    const [product] = await insertProducts(db, [{ price: "1.00", stock: 1 }], "observed");
    await db.select().from(schema.products).limit(1);
    await db.transaction(async (tx) => {
      await tx.execute(sql`select 1`);
      await tx.update(schema.products).set({ stock: 2 }).where(sql`${schema.products.id} = ${product.id}`);
    });
    const text = (await metrics.render()).body;
    const count = (op: string) =>
      Number(new RegExp(`^db_statement_duration_seconds_count\\{operation="${op}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
    expect(count("insert")).toBeGreaterThanOrEqual(1);
    expect(count("select")).toBeGreaterThanOrEqual(2);
    expect(count("update")).toBe(1);
    expect(text).toMatch(/^db_statements_in_flight 0$/m);
    expect(text).toMatch(/^db_statements_waiting 0$/m);
    expect(lines).toEqual([]);
  });

  test("a slow statement is one warn line naming the request, the procedure and the statement's shape", async () => {
    const { logger, lines } = captureLog();
    const db = await observedDb(handle, createStatementObserver({ logger, slowMs: 0 }));
    const [product] = await insertProducts(handle.db, [{ price: "3.00", stock: 4 }], "slow");
    // Through the app, so the tRPC middleware sets the scope the log line reads.
    const obs = createObservability(env({ METRICS: false, LOG_SLOW_QUERY_MS: 1 }), { logger, poolMax: 1, processMetrics: false });
    const app = createApp({ ...createTestDeps(db), logger, observability: obs });
    const res = await app.request(`/trpc/products.byId?input=${encodeURIComponent(JSON.stringify({ id: product.id }))}`, {
      headers: { "x-request-id": "slow-request-1" },
    });
    expect(res.status).toBe(200);
    const slow = lines.filter((l) => l.msg === "slow statement");
    expect(slow.length).toBeGreaterThanOrEqual(1);
    expect(slow[0]).toMatchObject({ level: "warn", requestId: "slow-request-1", procedure: "products.byId" });
    expect(typeof slow[0].ms).toBe("number");
    expect(String(slow[0].statement)).toMatch(/^select .*\$1/);
    expect(JSON.stringify(slow)).not.toContain(product.id);
  });
});

describe("statement observer (errors)", () => {
  test("a failing statement is counted and logged without its parameters; the gauges return to zero", async () => {
    const metrics = createMetrics({ poolMax: 1 });
    const { logger, lines } = captureLog();
    const db = await observedDb(handle, createStatementObserver({ metrics, logger, slowMs: 0 }));
    const secret = "secret-parameter@example.com";
    const failure = await callScope.run({ requestId: "r-err", procedure: "auth.login" }, () =>
      db.execute(sql`select ${secret}::text, 'inline literal' as a, 12345 as b from no_such_table`).then(
        () => undefined,
        (e: unknown) => e,
      ),
    );
    expect(failure).toBeInstanceOf(Error);
    const text = (await metrics.render()).body;
    expect(text).toMatch(/^db_statement_duration_seconds_count\{operation="select"\} 1$/m);
    expect(text).toMatch(/^db_statements_in_flight 0$/m);
    const logged = JSON.stringify(lines);
    expect(lines[0]).toMatchObject({ msg: "slow statement", requestId: "r-err", procedure: "auth.login" });
    expect(logged).not.toContain(secret);
    expect(logged).not.toContain("inline literal");
    expect(logged).not.toContain("12345");
  });
});

describe("error lines and traces (security)", () => {
  let receiver: ReturnType<typeof Bun.serve> | undefined;
  let obs: Observability | undefined;
  afterAll(async () => {
    await obs?.shutdown();
    receiver?.stop(true);
  });

  test("a procedure that fails on the database logs requestId and traceId; its spans carry neither SQL values nor messages", async () => {
    const spans: { traceId: string; name: string; status?: { code?: number; message?: string }; attributes?: unknown[] }[] = [];
    receiver = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const body = (await req.json()) as { resourceSpans: { scopeSpans: { spans: typeof spans }[] }[] };
        for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
        return Response.json({});
      },
    });
    const { logger, lines } = captureLog();
    obs = createObservability(env({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}` }), {
      logger,
      poolMax: 1,
      processMetrics: false,
    });
    // A closed embedded database: every statement fails in the driver.
    const closed = await createPgliteDatabase(undefined, obs.statements);
    await closed.close();
    const app = createApp({ ...createTestDeps(closed.db), logger, observability: obs });
    const id = crypto.randomUUID();
    const res = await app.request(`/trpc/products.byId?input=${encodeURIComponent(JSON.stringify({ id }))}`, {
      headers: { "x-request-id": "failing-request-1" },
    });
    expect(res.status).toBe(500);
    await obs.tracing!.flush();

    const failed = lines.find((l) => l.msg === "procedure failed");
    expect(failed).toMatchObject({ requestId: "failing-request-1", path: "products.byId" });
    expect(failed!.traceId).toMatch(/^[0-9a-f]{32}$/);
    const request = lines.find((l) => l.msg === "request");
    expect(request).toMatchObject({ requestId: "failing-request-1", traceId: failed!.traceId, status: 500 });

    const trace = spans.filter((s) => s.traceId === failed!.traceId);
    expect(trace.map((s) => s.name).sort()).toEqual(["GET /trpc/products.byId", "SELECT", "trpc products.byId"]);
    const select = trace.find((s) => s.name === "SELECT")!;
    expect(select.status).toMatchObject({ code: 2 });
    expect(JSON.stringify(trace)).not.toContain(id);
    expect(JSON.stringify(trace)).not.toContain("closed");
  });
});

describe("job metrics", () => {
  test("runs are counted by job and outcome, a claimed minute as skipped, and the last success is the run's time", async () => {
    const { createScheduler } = await import("../../src/jobs/scheduler");
    const metrics = createMetrics({ poolMax: 1 });
    const at = new Date("2031-03-05T10:15:00.000Z"); // a minute no other test claims
    const deps = { ...createTestDeps(handle.db, { clock: () => at }), handle, observability: { metrics } as Observability };
    const scheduler = createScheduler(deps, { host: "obs-test", jobs: [{ name: "prune-sessions", cron: "*/15 * * * *", bunOnly: false }] });
    expect((await scheduler.tick(at)).map((r) => r.ran)).toEqual([true]);
    expect((await scheduler.tick(at)).map((r) => r.ran)).toEqual([false]);
    const text = (await metrics.render()).body;
    expect(text).toContain('job_runs_total{job="prune-sessions",outcome="ok"} 1');
    expect(text).toContain('job_runs_total{job="prune-sessions",outcome="skipped"} 1');
    expect(text).toContain(`job_last_success_timestamp_seconds{job="prune-sessions"} ${at.getTime() / 1000}`);
    expect(text).not.toContain('job_runs_total{job="prune-sessions",outcome="failed"}');
  });
});

describe("METRICS=false (in process)", () => {
  test("no /metrics route; without OTEL_EXPORTER_OTLP_ENDPOINT log lines carry requestId and no traceId", async () => {
    const { logger, lines } = captureLog();
    const obs = createObservability(env({ METRICS: false }), { logger, poolMax: 1, processMetrics: false });
    expect(obs.metrics).toBeUndefined();
    expect(obs.tracing).toBeUndefined();
    const app = createApp({ ...createTestDeps(handle.db), logger, observability: obs });
    expect((await app.request("/metrics")).status).toBe(404);
    const health = await app.request("/health", { headers: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" } });
    expect(health.status).toBe(200);
    const requests = lines.filter((l) => l.msg === "request");
    expect(requests.length).toBe(2);
    for (const l of requests) {
      expect(typeof l.requestId).toBe("string");
      expect("traceId" in l).toBe(false);
    }
  });
});
