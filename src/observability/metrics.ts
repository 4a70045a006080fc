// Prometheus metrics, served by GET /metrics on the hosts that have a process to scrape (Bun,
// Deno). Nothing here touches a runtime API, so any host can build it; the process metrics
// (collectDefaultMetrics) are the host's choice.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

// Seconds. Requests and statements of this service sit between a millisecond and a second.
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export type StatusClass = "1xx" | "2xx" | "3xx" | "4xx" | "5xx";
export const statusClass = (status: number): StatusClass =>
  status >= 500 ? "5xx" : status >= 400 ? "4xx" : status >= 300 ? "3xx" : status >= 200 ? "2xx" : "1xx";

const ORDER_OUTCOMES = ["placed", "replayed", "stock", "not_found", "idempotency_conflict", "invalid", "unauthorized", "error"] as const;
const LOGIN_OUTCOMES = ["ok", "failed", "throttled", "invalid", "error"] as const;
export type OrderOutcome = (typeof ORDER_OUTCOMES)[number];
export type LoginOutcome = (typeof LOGIN_OUTCOMES)[number];
export type JobOutcome = "ok" | "failed" | "skipped";

const MISNAMED_DEFAULT_METRICS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

export interface MetricsOptions {
  /** process_* and nodejs_* metrics (prom-client's collectDefaultMetrics); off where the runtime lacks them. */
  processMetrics?: boolean;
  /** The database pool's size: DATABASE_POOL_MAX on Postgres, 1 for PGlite (a single connection). */
  poolMax: number;
}

export interface Metrics {
  readonly registry: Registry;
  /** One finished HTTP request; `procedure` is a bounded label (see ./labels). */
  request(procedure: string, status: number, seconds: number): void;
  /** Requests being served now; read at scrape time. */
  inFlight: { requests: number; statements: number };
  statement(operation: string, seconds: number): void;
  order(outcome: OrderOutcome): void;
  login(outcome: LoginOutcome): void;
  jobRun(job: string, outcome: JobOutcome, at: Date): void;
  /** The exposition text and its content type. */
  render(): Promise<{ body: string; contentType: string }>;
}

export function createMetrics(opts: MetricsOptions): Metrics {
  const registry = new Registry();
  const registers = [registry];
  if (opts.processMetrics) {
    // Event-loop lag sampled every 100 ms, not 10: a wake-up per sample is CPU the service pays while idle.
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 });
    // Gauges named like counters: promtool's lint (rightly) refuses them, and the handle and
    // request counts they carry say little about this service.
    for (const name of MISNAMED_DEFAULT_METRICS) registry.removeSingleMetric(name);
  }

  // Counted in plain numbers on the request path and handed to prom-client at scrape time.
  const requestCounts = new Map<string, { procedure: string; status: StatusClass; n: number; exported: number }>();
  new Counter({
    name: "http_requests_total",
    help: "HTTP requests served, by tRPC procedure (or route) and status class",
    labelNames: ["procedure", "status"] as const,
    registers,
    collect() {
      for (const c of requestCounts.values()) {
        if (c.n > c.exported) this.inc({ procedure: c.procedure, status: c.status }, c.n - c.exported);
        c.exported = c.n;
      }
    },
  });
  const requestSeconds = plainHistogram({
    name: "http_request_duration_seconds",
    help: "Time from receiving a request to its response, by tRPC procedure (or route) and status class",
    labelNames: ["procedure", "status"] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const inFlight = { requests: 0, statements: 0 };
  new Gauge({
    name: "http_requests_in_flight",
    help: "HTTP requests being served",
    registers,
    collect() {
      this.set(inFlight.requests);
    },
  });
  new Gauge({
    name: "db_pool_max_connections",
    help: "Connections the database pool may open (DATABASE_POOL_MAX; 1 for the embedded PGlite)",
    registers,
    collect() {
      this.set(opts.poolMax);
    },
  });
  new Gauge({
    name: "db_statements_in_flight",
    help: "SQL statements sent and not yet answered",
    registers,
    collect() {
      this.set(inFlight.statements);
    },
  });
  // postgres.js does not expose its queue; each connection runs one statement at a time, so the
  // statements in flight beyond the pool's size are the ones waiting (queued or pipelined).
  new Gauge({
    name: "db_statements_waiting",
    help: "SQL statements in flight beyond the pool's size, i.e. waiting for a connection",
    registers,
    collect() {
      this.set(Math.max(0, inFlight.statements - opts.poolMax));
    },
  });
  const statementSeconds = plainHistogram({
    name: "db_statement_duration_seconds",
    help: "Time from sending a SQL statement to its last row, by operation (select, insert, update, delete, with, other)",
    labelNames: ["operation"] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const orders = new Counter({
    name: "orders_create_total",
    help: "orders.create calls by outcome: placed, replayed (idempotent replay), or the refusal's reason",
    labelNames: ["outcome"] as const,
    registers,
  });
  const logins = new Counter({
    name: "auth_login_total",
    help: "auth.login calls by outcome: ok, failed (wrong credentials), throttled, invalid (bad input), error",
    labelNames: ["outcome"] as const,
    registers,
  });
  const jobRuns = new Counter({
    name: "job_runs_total",
    help: "Scheduled job runs on this host by job and outcome (skipped: another host had claimed the minute)",
    labelNames: ["job", "outcome"] as const,
    registers,
  });
  const jobSuccess = new Gauge({
    name: "job_last_success_timestamp_seconds",
    help: "Unix time of the last successful run of each job on this host",
    labelNames: ["job"] as const,
    registers,
  });

  // Every outcome is exported from the start, so a rate() over a reason never seen yet is 0, not absent.
  for (const o of ORDER_OUTCOMES) orders.labels(o).inc(0);
  for (const o of LOGIN_OUTCOMES) logins.labels(o).inc(0);

  // The children of each label set, found without building a key: by procedure, then by status
  // class. Each counts in plain numbers (the counter above, and PlainHistogramSeries).
  const requestChildren = new Map<string, Map<StatusClass, { count: { n: number }; seconds: PlainHistogramSeries }>>();
  const statementChildren = new Map<string, PlainHistogramSeries>();

  return {
    registry,
    inFlight,
    request(procedure, status, seconds) {
      const cls = statusClass(status);
      let byStatus = requestChildren.get(procedure);
      if (!byStatus) {
        byStatus = new Map();
        requestChildren.set(procedure, byStatus);
      }
      let child = byStatus.get(cls);
      if (!child) {
        const count = { procedure, status: cls, n: 0, exported: 0 };
        requestCounts.set(`${procedure} ${cls}`, count);
        child = { count, seconds: requestSeconds.series({ procedure, status: cls }) };
        byStatus.set(cls, child);
      }
      child.count.n++;
      child.seconds.observe(seconds);
    },
    statement(operation, seconds) {
      let child = statementChildren.get(operation);
      if (!child) {
        child = statementSeconds.series({ operation });
        statementChildren.set(operation, child);
      }
      child.observe(seconds);
    },
    order: (outcome) => orders.labels(outcome).inc(),
    login: (outcome) => logins.labels(outcome).inc(),
    jobRun(job, outcome, at) {
      jobRuns.labels(job, outcome).inc();
      if (outcome === "ok") jobSuccess.labels(job).set(at.getTime() / 1000);
    },
    async render() {
      return { body: await registry.metrics(), contentType: registry.contentType };
    },
  };
}

/** One label set of a histogram: its observations in plain numbers. */
interface PlainHistogramSeries {
  readonly labels: Record<string, string>;
  count: number;
  sum: number;
  /** Observations per bucket, not cumulative: [i] counts those at most bounds[i] and above bounds[i - 1]. */
  readonly buckets: number[];
  observe(value: number): void;
}

/** prom-client's record of one label set inside a Histogram (its `hashMap` values). */
interface PromHistogramEntry {
  labels: object;
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}

/**
 * A prom-client Histogram whose observations are counted in plain numbers and written into it at
 * scrape time, so /metrics renders exactly what prom-client's own `observe` would have produced
 * (the same buckets, counts, and a sum added up in the same order). prom-client's `observe`
 * builds a label object, validates and hashes it, and reads and writes every bucket through a
 * property named by its bound (a number turned into a string) on every call: in the full app
 * that cost about 8 µs of a ~70 µs `products.byId` (in-process, the full app as deployed, December 2026).
 *
 * The writing reaches into prom-client's own record (`hashMap`, entries made by the public
 * `zero()`), which prom-client does not promise to keep: test/unit/observability.test.ts renders
 * these histograms and compares them with prom-client's own `observe`, so an upgrade that changes
 * it fails there.
 */
function plainHistogram<T extends string>(config: {
  name: string;
  help: string;
  labelNames: readonly T[];
  buckets: number[];
  registers: Registry[];
}): { series(labels: Record<T, string>): PlainHistogramSeries } {
  const bounds = config.buckets;
  const all = new Map<object, PlainHistogramSeries>();
  new Histogram<T>({
    ...config,
    collect() {
      // zero() makes (or empties) prom-client's entry for each label set, keeping the label
      // object given, by which the entry is found again below. A series whose only observation
      // was refused (not a finite number) has none, as in prom-client.
      for (const s of all.values()) if (s.count > 0) this.zero(s.labels as Partial<Record<T, string>>);
      const entries = (this as unknown as { hashMap: Record<string, PromHistogramEntry> }).hashMap;
      for (const entry of Object.values(entries)) {
        const s = all.get(entry.labels);
        if (!s) continue;
        entry.count = s.count;
        entry.sum = s.sum;
        for (let i = 0; i < bounds.length; i++) entry.bucketValues[bounds[i]] = s.buckets[i];
      }
    },
  });
  return {
    series(labels) {
      const s: PlainHistogramSeries = {
        labels,
        count: 0,
        sum: 0,
        buckets: bounds.map(() => 0),
        observe(value) {
          if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
          // As prom-client: the first bucket whose bound is at least the value; above the last
          // bound it is only in the count (the +Inf bucket).
          let i = 0;
          while (i < bounds.length && value > bounds[i]) i++;
          if (i < bounds.length) s.buckets[i]++;
          s.sum += value;
          s.count++;
        },
      };
      all.set(labels, s);
      return s;
    },
  };
}
