import { fetchRequestHandler } from "@trpc/server/adapters/fetch";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { sql } from "drizzle-orm";
import { describeError } from "./lib/logger";
import { appRouter } from "./routers";
import { bearerToken, clientAddressOf, type AppDeps } from "./trpc/context";

export const MAX_BODY_BYTES = 1024 * 1024;
/** Calls per batched request; each login in a batch still counts against the throttle. */
export const MAX_BATCH_SIZE = 64;
const HEALTH_TIMEOUT_MS = 2000;

type HostBindings = { socketAddress?: string };
type Variables = { requestId: string };

const REQUEST_ID_RE = /^[A-Za-z0-9._-]{1,128}$/;

/** The one app factory: the Bun host and the Worker both serve exactly this. */
export function createApp(deps: AppDeps) {
  const app = new Hono<{ Bindings: HostBindings; Variables: Variables }>();

  // GET and HEAD bodies are never read, so only other methods pay for the size check.
  const limitBody = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: (c) => c.json({ error: { message: `The request body is larger than ${MAX_BODY_BYTES} bytes` } }, 413),
  });

  app.use("*", async (c, next) => {
    const incoming = c.req.header("x-request-id");
    const requestId = incoming && REQUEST_ID_RE.test(incoming) ? incoming : crypto.randomUUID();
    c.set("requestId", requestId);
    const started = performance.now();
    const method = c.req.method;
    if (method === "GET" || method === "HEAD") await next();
    else {
      const refused = await limitBody(c, next);
      // bodyLimit answers 413 by returning a Response instead of calling next.
      if (refused instanceof Response) c.res = refused;
    }
    c.res.headers.set("x-request-id", requestId);
    deps.logger.info("request", {
      requestId,
      method,
      path: c.req.path,
      status: c.res.status,
      ms: Math.round((performance.now() - started) * 10) / 10,
    });
  });

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
      deps.logger.warn("health check failed", { requestId: c.get("requestId"), ...describeError(error), stack: undefined });
      return c.json({ status: "degraded", db: "down" }, 503);
    } finally {
      clearTimeout(timer);
    }
  });

  app.all("/trpc/*", (c) => {
    const requestId = c.get("requestId");
    return fetchRequestHandler({
      endpoint: "/trpc",
      req: c.req.raw,
      router: appRouter,
      maxBatchSize: MAX_BATCH_SIZE,
      createContext: ({ resHeaders }) => ({
        ...deps,
        requestId,
        resHeaders,
        accessToken: bearerToken(c.req.header("authorization")),
        clientAddress: clientAddressOf(c.req.raw.headers, c.env?.socketAddress, deps.env.TRUST_PROXY),
      }),
      responseMeta({ errors }) {
        const retryAfter = errors
          .map((e) => (e.cause as { details?: { retryAfterSeconds?: number } } | undefined)?.details?.retryAfterSeconds)
          .find((s) => typeof s === "number");
        return retryAfter ? { headers: { "retry-after": String(retryAfter) } } : {};
      },
      onError({ error, path }) {
        // Only server faults are logged with detail; client errors are in the request log line.
        if (error.code === "INTERNAL_SERVER_ERROR") {
          deps.logger.error("procedure failed", { requestId, path, ...describeError(error.cause ?? error) });
        }
      },
    });
  });

  app.notFound((c) => c.json({ error: { message: "Not found" } }, 404));
  app.onError((error, c) => {
    deps.logger.error("unhandled error", { requestId: c.get("requestId"), ...describeError(error) });
    return c.json({ error: { message: "Something went wrong on our side; try again later" } }, 500);
  });

  return app;
}

export type App = ReturnType<typeof createApp>;
