// What the hosts switch on from the environment: Prometheus metrics (METRICS, default on),
// OpenTelemetry traces (only with OTEL_EXPORTER_OTLP_ENDPOINT) and the slow-statement log
// (LOG_SLOW_QUERY_MS, 0 = off). The HTTP, tRPC and database layers each take their part from here.
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import type { TRPCError } from "@trpc/server";
import type { Env } from "../env";
import { DomainError } from "../errors";
import type { Logger } from "../lib/logger";
import { callScope } from "./context";
import { createMetrics, type LoginOutcome, type Metrics, type OrderOutcome } from "./metrics";
import { createStatementObserver, type StatementObserver } from "./statements";
import { startTracing, type Tracing } from "./tracing";

export type { Metrics } from "./metrics";
export type { StatementObserver } from "./statements";

/** The part of a tRPC middleware result that is read here. */
type ProcedureResult = { ok: true; data: unknown } | { ok: false; error: TRPCError };

export interface ProcedureCall {
  path: string;
  type: string;
  requestId: string;
}

export interface Observability {
  metrics?: Metrics;
  tracing?: Tracing;
  /** For the database client; undefined when neither metrics, traces nor the slow log want statements. */
  statements?: StatementObserver;
  metricsToken?: string;
  /** Runs one tRPC procedure call: its span, its scope for the slow-statement log, its outcome counters. */
  procedure<R extends ProcedureResult>(call: ProcedureCall, next: () => Promise<R>): Promise<R>;
  shutdown(): Promise<void>;
}

export type ObservabilityEnv = Pick<
  Env,
  "METRICS" | "METRICS_TOKEN" | "LOG_SLOW_QUERY_MS" | "OTEL_EXPORTER_OTLP_ENDPOINT" | "OTEL_SERVICE_NAME"
> &
  Partial<Pick<Env, "OTEL_TRACES_SAMPLER" | "OTEL_TRACES_SAMPLER_ARG">>;

export interface ObservabilityOptions {
  logger: Logger;
  /** The database pool's size (1 for PGlite). */
  poolMax: number;
  /** prom-client's process metrics; the host says whether its runtime has them. */
  processMetrics: boolean;
}

/** A replay answers the order an earlier call created; a new order is created during this call. */
const REPLAY_AGE_MS = 1000;

export function createObservability(env: ObservabilityEnv, opts: ObservabilityOptions): Observability {
  const metrics = env.METRICS ? createMetrics({ poolMax: opts.poolMax, processMetrics: opts.processMetrics }) : undefined;
  const tracing = env.OTEL_EXPORTER_OTLP_ENDPOINT
    ? startTracing({
        endpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT,
        serviceName: env.OTEL_SERVICE_NAME,
        sampler: env.OTEL_TRACES_SAMPLER,
        samplerArg: env.OTEL_TRACES_SAMPLER_ARG,
      })
    : undefined;
  const tracer = tracing?.tracer;
  const slowLog = env.LOG_SLOW_QUERY_MS > 0;
  const statements =
    metrics || tracer || slowLog
      ? createStatementObserver({
          metrics,
          tracer,
          logger: opts.logger,
          slowMs: slowLog ? env.LOG_SLOW_QUERY_MS : Number.POSITIVE_INFINITY,
        })
      : undefined;

  const spanned = <R extends ProcedureResult>(call: ProcedureCall, next: () => Promise<R>): Promise<R> =>
    tracer!.startActiveSpan(
      `trpc ${call.path}`,
      {
        kind: SpanKind.INTERNAL,
        attributes: { "rpc.system": "trpc", "rpc.method": call.path, "trpc.type": call.type, "request.id": call.requestId },
      },
      async (span) => {
        try {
          const result = await next();
          if (!result.ok) {
            span.setAttribute("trpc.error_code", result.error.code);
            // The code only: a message may name a field, and an internal error's may hold SQL values.
            if (result.error.code === "INTERNAL_SERVER_ERROR") span.setStatus({ code: SpanStatusCode.ERROR, message: result.error.code });
          }
          return result;
        } finally {
          span.end();
        }
      },
    );

  return {
    metrics,
    tracing,
    statements,
    metricsToken: env.METRICS_TOKEN,
    procedure(call, next) {
      // Only two procedures have outcome counters; the others pay no extra promise here.
      const counted = metrics !== undefined && (call.path === "orders.create" || call.path === "auth.login");
      const started = counted ? Date.now() : 0;
      const run = tracer ? () => spanned(call, next) : next;
      const result = slowLog || tracer ? callScope.run({ requestId: call.requestId, procedure: call.path }, run) : run();
      if (!counted) return result;
      return result.then((r) => {
        if (call.path === "orders.create") metrics!.order(orderOutcome(r, started));
        else metrics!.login(loginOutcome(r));
        return r;
      });
    },
    async shutdown() {
      await tracing?.shutdown();
    },
  };
}

function orderOutcome(result: ProcedureResult, started: number): OrderOutcome {
  if (result.ok) {
    const createdAt = Date.parse(String((result.data as { createdAt?: unknown } | null)?.createdAt));
    return createdAt < started - REPLAY_AGE_MS ? "replayed" : "placed";
  }
  switch (result.error.code) {
    case "CONFLICT": {
      const cause = result.error.cause;
      return cause instanceof DomainError && cause.details.productIds ? "stock" : "idempotency_conflict";
    }
    case "NOT_FOUND":
      return "not_found";
    case "BAD_REQUEST":
    case "PARSE_ERROR":
      return "invalid";
    case "UNAUTHORIZED":
    case "FORBIDDEN":
      return "unauthorized";
    default:
      return "error";
  }
}

function loginOutcome(result: ProcedureResult): LoginOutcome {
  if (result.ok) return "ok";
  switch (result.error.code) {
    case "UNAUTHORIZED":
      return "failed";
    case "TOO_MANY_REQUESTS":
      return "throttled";
    case "BAD_REQUEST":
    case "PARSE_ERROR":
      return "invalid";
    default:
      return "error";
  }
}

export { currentTraceId } from "./trace-id";
