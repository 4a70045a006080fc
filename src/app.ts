import { fetchRequestHandler } from "@trpc/server/adapters/fetch";
import { sql } from "drizzle-orm";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { corsFor, securityHeaders } from "./browser";
import type { AppDeps } from "./deps";
import { describeError } from "./lib/logger";
import { countRequest, metricsRoute, traceRequests } from "./observability/http";
import { mountReference, type ReferenceScript } from "./reference";
import { appRouter } from "./routers";
import { TRPC_ENDPOINT, trpcHandlerOptions } from "./trpc/handler";
import { answerSingleQuery } from "./trpc/query-fast-path";

export const MAX_BODY_BYTES = 1024 * 1024;
export { MAX_BATCH_SIZE } from "./trpc/handler";

const HEALTH_TIMEOUT_MS = 2000;

type HostBindings = { socketAddress?: string };
type Variables = { requestId: string; traceId?: string; secureHeadersNonce?: string };

/** What differs between hosts beyond the deps: the Bun host can serve the /docs page's script. */
export interface AppOptions {
  referenceScript?: ReferenceScript;
}

const REQUEST_ID_RE = /^[A-Za-z0-9._-]{1,128}$/;

/** The one app factory: the Bun host and the Worker both serve exactly this. */
export function createApp(deps: AppDeps, options: AppOptions = {}) {
  const app = new Hono<{ Bindings: HostBindings; Variables: Variables }>();

  // GET and HEAD bodies are never read, so only other methods pay for the size check.
  const limitBody = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: (c) => c.json({ error: { message: `The request body is larger than ${MAX_BODY_BYTES} bytes` } }, 413),
  });

  const metrics = deps.observability?.metrics;
  app.use("*", async (c, next) => {
    const incoming = c.req.header("x-request-id");
    const requestId = incoming && REQUEST_ID_RE.test(incoming) ? incoming : crypto.randomUUID();
    c.set("requestId", requestId);
    const started = performance.now();
    const method = c.req.method;
    const path = c.req.path;
    const counted = metrics ? countRequest(metrics, path) : undefined;
    try {
      if (method === "GET" || method === "HEAD") await next();
      else {
        const refused = await limitBody(c, next);
        // bodyLimit answers 413 by returning a Response instead of calling next.
        if (refused instanceof Response) c.res = refused;
      }
    } finally {
      counted?.(c.res.status);
    }
    const res = c.res;
    res.headers.set("x-request-id", requestId);
    deps.logger.info("request", {
      requestId,
      method,
      path,
      status: res.status,
      ms: Math.round((performance.now() - started) * 10) / 10,
      traceId: c.get("traceId"),
    });
  });

  // Metrics and traces (src/observability); GET /metrics where the host serves them.
  if (deps.observability) {
    const tracer = deps.observability.tracing?.tracer;
    if (tracer) app.use("*", traceRequests(tracer));
    app.get("/metrics", metricsRoute(deps.observability));
  }
  // Browsers: security headers on every answer; CORS only for the origins in CORS_ORIGINS.
  app.use("*", securityHeaders);
  const corsMiddleware = corsFor(deps.env.CORS_ORIGINS);
  if (corsMiddleware) app.use("*", corsMiddleware);

  app.get("/health", async (c) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        deps.db.execute(sql`select 1`),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("health check timed out")), HEALTH_TIMEOUT_MS);
        }),
      ]);
      return c.json({ status: "ok", db: "ok" });
    } catch (error) {
      deps.logger.warn("health check failed", {
        requestId: c.get("requestId"),
        traceId: c.get("traceId"),
        ...describeError(error),
        stack: undefined,
      });
      return c.json({ status: "degraded", db: "down" }, 503);
    } finally {
      clearTimeout(timer);
    }
  });

  // The API described: GET /openapi.json, and GET /docs where the host serves its script.
  mountReference(app, options.referenceScript);

  app.all(`${TRPC_ENDPOINT}/*`, async (c) => {
    const options = trpcHandlerOptions(appRouter, deps, {
      req: c.req.raw,
      requestId: c.get("requestId"),
      socketAddress: c.env?.socketAddress,
    });
    if (deps.env.TRPC_FAST_PATH) {
      const fast = await answerSingleQuery(options);
      if (fast) return fast;
    }
    return fetchRequestHandler(options);
  });

  app.notFound((c) => c.json({ error: { message: "Not found" } }, 404));
  app.onError((error, c) => {
    deps.logger.error("unhandled error", { requestId: c.get("requestId"), traceId: c.get("traceId"), ...describeError(error) });
    return c.json({ error: { message: "Something went wrong on our side; try again later" } }, 500);
  });

  return app;
}
