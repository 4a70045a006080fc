// OpenTelemetry traces, exported over OTLP/HTTP. Only built when OTEL_EXPORTER_OTLP_ENDPOINT is
// set: without it no provider is registered and @opentelemetry/api hands out no-op spans.
import { context, propagation, type Tracer, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";

export interface Tracing {
  tracer: Tracer;
  /** Sends what is buffered (tests, and before exit). */
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

export interface TracingOptions {
  /** The collector's base URL (OTEL_EXPORTER_OTLP_ENDPOINT); spans go to `<endpoint>/v1/traces`. */
  endpoint: string;
  serviceName: string;
  /** OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (the ratio, for the *traceidratio samplers). */
  sampler?: string;
  samplerArg?: number;
}

/**
 * The sampler the OpenTelemetry specification names by OTEL_TRACES_SAMPLER. `parentbased_*`
 * follows the caller's sampled flag (traceparent) and applies the rest to new traces; a ratio
 * keeps that share of traces whole (the decision hangs on the trace id, so every span of a
 * request is kept or dropped together).
 */
export function samplerFor(name = "parentbased_always_on", ratio = 1): Sampler {
  const root = name.endsWith("always_off")
    ? new AlwaysOffSampler()
    : name.endsWith("traceidratio")
      ? new TraceIdRatioBasedSampler(ratio)
      : new AlwaysOnSampler();
  return name.startsWith("parentbased_") ? new ParentBasedSampler({ root }) : root;
}

/** The OTLP/HTTP traces URL for a base endpoint, as the OTLP exporter specification builds it. */
export const tracesUrl = (endpoint: string) => `${endpoint.replace(/\/+$/, "")}/v1/traces`;

export function startTracing(opts: TracingOptions): Tracing {
  const exporter = new OTLPTraceExporter({ url: tracesUrl(opts.endpoint) });
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": opts.serviceName }),
    sampler: samplerFor(opts.sampler, opts.samplerArg),
    spanProcessors: [new BatchSpanProcessor({ exporter })],
  });
  // Parent/child links follow async calls (AsyncLocalStorage: Bun, Deno and Node all have it);
  // W3C traceparent is what callers and proxies send.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  return {
    tracer: provider.getTracer("commerce-backend"),
    flush: () => provider.forceFlush(),
    async shutdown() {
      await provider.shutdown();
      trace.disable();
      propagation.disable();
      context.disable();
    },
  };
}
