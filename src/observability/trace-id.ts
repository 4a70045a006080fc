import { trace } from "@opentelemetry/api";

/** The trace id of the span this code runs in, for log lines; undefined when tracing is off. */
export function currentTraceId(): string | undefined {
  const span = trace.getActiveSpan();
  return span?.isRecording() ? span.spanContext().traceId : undefined;
}
