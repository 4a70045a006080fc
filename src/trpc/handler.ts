import type { FetchHandlerRequestOptions } from "@trpc/server/adapters/fetch";
import type { AppDeps } from "../deps";
import { describeError } from "../lib/logger";
import { currentTraceId } from "../observability/trace-id";
import type { AppRouter } from "../routers";
import { bearerToken, clientAddressOf } from "./context";

export const TRPC_ENDPOINT = "/trpc";
/** Calls per batched request; each login in a batch still counts against the throttle. */
export const MAX_BATCH_SIZE = 64;

/**
 * How one HTTP request is served by tRPC: the context, the error log and the response headers.
 * Both the single-query fast path and tRPC's fetch adapter take exactly these options. The router
 * is handed in by the app factory, so this layer does not import the routers it serves.
 */
export function trpcHandlerOptions(
  router: AppRouter,
  deps: AppDeps,
  request: { req: Request; requestId: string; socketAddress: string | undefined },
): FetchHandlerRequestOptions<AppRouter> {
  const { req, requestId } = request;
  return {
    endpoint: TRPC_ENDPOINT,
    req,
    router,
    maxBatchSize: MAX_BATCH_SIZE,
    createContext: ({ resHeaders }) => ({
      ...deps,
      requestId,
      resHeaders,
      accessToken: bearerToken(req.headers.get("authorization")),
      clientAddress: clientAddressOf(req.headers, request.socketAddress, deps.env.TRUST_PROXY),
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
        deps.logger.error("procedure failed", { requestId, traceId: currentTraceId(), path, ...describeError(error.cause ?? error) });
      }
    },
  };
}
