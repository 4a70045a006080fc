import { fetchRequestHandler } from "@trpc/server/adapters/fetch";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { sql } from "drizzle-orm";
import { describeError } from "./lib/logger";
import { answerSingleQuery } from "./trpc/query-fast-path";
import { TRPC_ENDPOINT, trpcHandlerOptions } from "./trpc/handler";
import type { AppDeps } from "./trpc/context";

export const MAX_BODY_BYTES = 1024 * 1024;
export { MAX_BATCH_SIZE } from "./trpc/handler";
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

  app.all(`${TRPC_ENDPOINT}/*`, async (c) => {
    const options = trpcHandlerOptions(deps, {
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
    deps.logger.error("unhandled error", { requestId: c.get("requestId"), ...describeError(error) });
    return c.json({ error: { message: "Something went wrong on our side; try again later" } }, 500);
  });

  return app;
}
