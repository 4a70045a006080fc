import { describe, expect, test } from "bun:test";
import { Histogram, Registry } from "prom-client";
import { EnvError, parseEnv } from "../../src/env";
import { procedureLabel } from "../../src/observability/labels";
import { createMetrics, statusClass } from "../../src/observability/metrics";
import { statementOperation, statementShape } from "../../src/observability/statements";

describe("observability: happy path", () => {
  test("env defaults: metrics on, tracing off, slow statements above 500 ms", () => {
    const env = parseEnv({});
    expect(env.METRICS).toBe(true);
    expect(env.METRICS_TOKEN).toBeUndefined();
    expect(env.LOG_SLOW_QUERY_MS).toBe(500);
    expect(env.OTEL_EXPORTER_OTLP_ENDPOINT).toBeUndefined();
    expect(env.OTEL_SERVICE_NAME).toBe("commerce-backend");
    const set = parseEnv({ METRICS: "false", LOG_SLOW_QUERY_MS: "0", OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" });
    expect([set.METRICS, set.LOG_SLOW_QUERY_MS, set.OTEL_EXPORTER_OTLP_ENDPOINT]).toEqual([false, 0, "http://127.0.0.1:4318"]);
  });

  test("procedure labels are router names, batch, known routes or other", () => {
    expect(procedureLabel("/trpc/products.byId")).toBe("products.byId");
    expect(procedureLabel("/trpc/orders.create")).toBe("orders.create");
    expect(procedureLabel("/trpc/products.byId,products.list")).toBe("batch");
    expect(procedureLabel("/health")).toBe("/health");
    expect(procedureLabel("/metrics")).toBe("/metrics");
  });

  test("statement shapes keep placeholders and drop literals; operations come from a closed set", () => {
    expect(statementShape(`select "id"\n  from "products" where "id" = $1 limit $2`)).toBe(
      `select "id" from "products" where "id" = $1 limit $2`,
    );
    expect(statementShape("select 'a@b.example' as e, 42, x1, \"t2\".c from t where n > 3.5")).toBe(
      "select '?' as e, ?, x1, \"t2\".c from t where n > ?",
    );
    expect(statementOperation("  WITH input as (select 1) select 2")).toBe("with");
    expect(statementOperation("insert into x values ($1)")).toBe("insert");
    expect(statementOperation("vacuum analyze")).toBe("other");
    expect([statusClass(200), statusClass(302), statusClass(404), statusClass(503)]).toEqual(["2xx", "3xx", "4xx", "5xx"]);
  });

  test("metrics render every outcome from zero, and count what they are told", async () => {
    const m = createMetrics({ poolMax: 4 });
    m.request("products.byId", 200, 0.004);
    m.request("products.byId", 404, 0.002);
    m.order("stock");
    m.login("throttled");
    m.jobRun("prune-sessions", "ok", new Date("2026-12-01T00:00:00Z"));
    m.inFlight.statements = 6;
    const { body, contentType } = await m.render();
    expect(contentType).toContain("text/plain");
    expect(body).toContain('http_requests_total{procedure="products.byId",status="2xx"} 1');
    expect(body).toContain('http_requests_total{procedure="products.byId",status="4xx"} 1');
    expect(body).toContain('http_request_duration_seconds_bucket{le="0.005",procedure="products.byId",status="2xx"} 1');
    expect(body).toContain('orders_create_total{outcome="stock"} 1');
    expect(body).toContain('orders_create_total{outcome="replayed"} 0');
    expect(body).toContain('auth_login_total{outcome="throttled"} 1');
    expect(body).toContain('job_runs_total{job="prune-sessions",outcome="ok"} 1');
    expect(body).toContain('job_last_success_timestamp_seconds{job="prune-sessions"} 1796083200');
    expect(body).toContain("db_pool_max_connections 4");
    expect(body).toContain("db_statements_waiting 2");
  });
});

// The request and statement histograms are counted in plain numbers and written into prom-client
// at scrape time (src/observability/metrics.ts, plainHistogram); what /metrics shows must be what
// prom-client's own observe() would have made of the same observations.
describe("observability: histograms as prom-client renders them", () => {
  const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  // Below, on and between bounds, above the last one (only in +Inf), and sums that round.
  const seconds = [0, 0.0001, 0.001, 0.0010001, 0.004, 0.005, 0.1, 0.3, 0.7, 1, 9.99, 10, 10.5, 120, 0.1 + 0.2];

  // One metric's lines (# HELP to its last sample); the registry separates metrics by a blank line.
  const section = (body: string, name: string) =>
    body
      .split("\n\n")
      .find((block) => block.startsWith(`# HELP ${name} `))
      ?.trimEnd();

  function reference(name: string, help: string, labelNames: string[]) {
    const registry = new Registry();
    return { registry, histogram: new Histogram({ name, help, labelNames, buckets: BUCKETS, registers: [registry] }) };
  }

  test("http_request_duration_seconds: the same text as prom-client's observe, scrape after scrape", async () => {
    const m = createMetrics({ poolMax: 1 });
    const name = "http_request_duration_seconds";
    const help = (await m.render()).body.match(new RegExp(`# HELP ${name} (.*)`))?.[1] ?? "";
    const ref = reference(name, help, ["procedure", "status"]);
    const observe = (procedure: string, status: number, s: number) => {
      m.request(procedure, status, s);
      ref.histogram.labels(procedure, statusClass(status)).observe(s);
    };
    for (const [i, s] of seconds.entries()) observe(i % 3 ? "products.byId" : "products.list", i % 4 ? 200 : 404, s);
    expect(section((await m.render()).body, name)).toBe(section(await ref.registry.metrics(), name));
    // More observations after a scrape, and a label set seen only now.
    for (const s of seconds) observe("products.byId", 200, s / 7);
    observe("/health", 503, 0.02);
    const body = (await m.render()).body;
    expect(section(body, name)).toBe(section(await ref.registry.metrics(), name));
    expect(body).toContain('http_request_duration_seconds_bucket{le="+Inf",procedure="/health",status="5xx"} 1');
  });

  test("db_statement_duration_seconds: the same text as prom-client's observe", async () => {
    const m = createMetrics({ poolMax: 1 });
    const name = "db_statement_duration_seconds";
    const help = (await m.render()).body.match(new RegExp(`# HELP ${name} (.*)`))?.[1] ?? "";
    const ref = reference(name, help, ["operation"]);
    for (const [i, s] of seconds.entries()) {
      const operation = ["select", "insert", "with"][i % 3];
      m.statement(operation, s);
      ref.histogram.labels(operation).observe(s);
    }
    expect(section((await m.render()).body, name)).toBe(section(await ref.registry.metrics(), name));
    expect(section((await m.render()).body, name)).toBe(section(await ref.registry.metrics(), name));
  });

  test("error: a value that is not a finite number is refused, as prom-client refuses it", () => {
    const m = createMetrics({ poolMax: 1 });
    expect(() => m.request("products.byId", 200, Number.NaN)).toThrow(TypeError);
    expect(() => m.statement("select", Number.POSITIVE_INFINITY)).toThrow(TypeError);
  });
});

describe("observability: errors", () => {
  const refused = (env: Record<string, string>) => {
    try {
      parseEnv(env);
    } catch (error) {
      expect(error).toBeInstanceOf(EnvError);
      return (error as Error).message;
    }
    throw new Error("accepted");
  };
  test("bad values are refused naming the variable, never echoing a token", () => {
    expect(refused({ METRICS: "yes" })).toContain("METRICS must be true or false");
    expect(refused({ LOG_SLOW_QUERY_MS: "-1" })).toContain("LOG_SLOW_QUERY_MS");
    expect(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: "localhost:4318" })).toContain(
      "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL",
    );
    const message = refused({ METRICS_TOKEN: "short-token" });
    expect(message).toContain("METRICS_TOKEN must be 16 to 256");
    expect(message).not.toContain("short-token");
  });
});

describe("observability: security", () => {
  test("client-made paths never become labels", () => {
    for (const path of ["/trpc/someone@example.com", "/trpc/products.byId/../x", `/trpc/${crypto.randomUUID()}`, "/users/42", "/trpc/"]) {
      expect(procedureLabel(path)).toBe("other");
    }
  });
});

describe("trace sampling (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG)", () => {
  const { samplerFor } = require("../../src/observability/tracing") as typeof import("../../src/observability/tracing");
  const { ROOT_CONTEXT, SpanKind, TraceFlags, trace } = require("@opentelemetry/api") as typeof import("@opentelemetry/api");
  const { SamplingDecision } = require("@opentelemetry/sdk-trace") as typeof import("@opentelemetry/sdk-trace");
  const kept = (name: string, ratio: number, traceId: string, parentSampled?: boolean) => {
    const ctx =
      parentSampled === undefined
        ? ROOT_CONTEXT
        : trace.setSpanContext(ROOT_CONTEXT, {
            traceId,
            spanId: "00f067aa0ba902b7",
            traceFlags: parentSampled ? TraceFlags.SAMPLED : TraceFlags.NONE,
            isRemote: true,
          });
    return (
      samplerFor(name, ratio).shouldSample(ctx, traceId, "GET /trpc/products.byId", SpanKind.SERVER, {}, []).decision ===
      SamplingDecision.RECORD_AND_SAMPLED
    );
  };
  // Random trace ids, as the SDK's own id generator makes them.
  const ids = Array.from({ length: 2000 }, () => Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex"));

  test("happy: the default keeps every new trace; a ratio keeps about that share, decided by the trace id", () => {
    expect(parseEnv({}).OTEL_TRACES_SAMPLER).toBe("parentbased_always_on");
    expect(parseEnv({ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.25" }).OTEL_TRACES_SAMPLER_ARG).toBe(0.25);
    expect(ids.every((id) => kept("parentbased_always_on", 1, id))).toBe(true);
    const share = ids.filter((id) => kept("traceidratio", 0.25, id)).length / ids.length;
    expect(share).toBeGreaterThan(0.15);
    expect(share).toBeLessThan(0.35);
    // The same trace id always gets the same answer: a request's spans are kept or dropped together.
    expect(ids.map((id) => kept("traceidratio", 0.25, id))).toEqual(ids.map((id) => kept("traceidratio", 0.25, id)));
    expect(ids.some((id) => kept("always_off", 1, id))).toBe(false);
  });

  test("happy: parentbased_* follows the caller's sampled flag, whatever the ratio", () => {
    expect(kept("parentbased_traceidratio", 0, ids[1], true)).toBe(true);
    expect(kept("parentbased_always_on", 1, ids[1], false)).toBe(false);
    expect(kept("traceidratio", 0, ids[1], true)).toBe(false);
  });

  test("error: an unknown sampler or a ratio outside 0..1 is refused with the variable's name", () => {
    expect(() => parseEnv({ OTEL_TRACES_SAMPLER: "sometimes" })).toThrow(/OTEL_TRACES_SAMPLER must be one of always_on/);
    expect(() => parseEnv({ OTEL_TRACES_SAMPLER_ARG: "1.5" })).toThrow(/OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1/);
    expect(() => parseEnv({ OTEL_TRACES_SAMPLER_ARG: "half" })).toThrow(/OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1/);
  });
});
