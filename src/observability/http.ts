import { propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, type TextMapGetter, type Tracer } from "@opentelemetry/api";
import type { Context, MiddlewareHandler } from "hono";
import type { Observability } from "./index";
import { procedureLabel } from "./labels";
import type { Metrics } from "./metrics";

const headerGetter: TextMapGetter<Headers> = {
  keys: (headers) => [...headers.keys()],
  get: (headers, key) => headers.get(key) ?? undefined,
};

type Env = { Variables: { requestId: string; traceId?: string } };

/**
 * Counts one request from its start to its response (the request-log middleware calls it, so
 * metrics add no middleware of their own: on a request of ~130 µs of CPU a layer shows).
 * Returns the function that records its end.
 */
export function countRequest(metrics: Metrics, path: string): (status: number) => void {
  const started = performance.now();
  const label = procedureLabel(path);
  metrics.inFlight.requests++;
  return (status) => {
    metrics.inFlight.requests--;
    metrics.request(label, status, (performance.now() - started) / 1000);
  };
}

/**
 * The request's server span, when tracing is on. Runs inside the request-log middleware (which
 * set the request id) and hands the trace id back to it through `c.set("traceId")`.
 */
export function traceRequests(tracer: Tracer): MiddlewareHandler<Env> {
  return (c, next) => {
    const label = procedureLabel(c.req.path);
    // W3C traceparent from the caller (or its proxy) makes this span a child of theirs.
    const parent = propagation.extract(ROOT_CONTEXT, c.req.raw.headers, headerGetter);
    const route = label === "other" ? undefined : label.startsWith("/") ? label : `/trpc/${label}`;
    const method = c.req.method;
    // Only bounded, non-identifying attributes: the route, never the URL (its query string is the input).
    return tracer.startActiveSpan(
      route ? `${method} ${route}` : method,
      {
        kind: SpanKind.SERVER,
        attributes: { "http.request.method": method, ...(route ? { "http.route": route } : {}), "request.id": c.get("requestId") },
      },
      parent,
      async (span) => {
        c.set("traceId", span.spanContext().traceId);
        try {
          await next();
          span.setAttribute("http.response.status_code", c.res.status);
          if (c.res.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        } finally {
          span.end();
        }
      },
    );
  };
}

/** GET /metrics; with METRICS_TOKEN set, only for `Authorization: Bearer <METRICS_TOKEN>`. */
export function metricsRoute(obs: Observability) {
  const expected = obs.metricsToken ? new TextEncoder().encode(`Bearer ${obs.metricsToken}`) : undefined;
  return async (c: Context) => {
    const metrics = obs.metrics;
    if (!metrics) return c.json({ error: { message: "Not found" } }, 404);
    if (expected && !sameBytes(new TextEncoder().encode(c.req.header("authorization") ?? ""), expected)) {
      return c.json({ error: { message: "Send Authorization: Bearer <METRICS_TOKEN>" } }, 401, {
        "www-authenticate": 'Bearer realm="metrics"',
      });
    }
    const { body, contentType } = await metrics.render();
    return c.body(body, 200, { "content-type": contentType, "cache-control": "no-store" });
  };
}

/** Constant-time comparison, so the token cannot be guessed byte by byte from response times. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i] ?? 0) ^ b[i];
  return diff === 0;
}
