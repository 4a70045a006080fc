import {
  type AnyTRPCRouter,
  callTRPCProcedure,
  getTRPCErrorFromUnknown,
  getTRPCErrorShape,
  TRPCError,
  transformTRPCResponse,
} from "@trpc/server";
import type { FetchHandlerRequestOptions } from "@trpc/server/adapters/fetch";
import { getHTTPStatusCode, type TRPCRequestInfo } from "@trpc/server/http";

/**
 * tRPC's fetch adapter for the one request shape that dominates traffic: a single query over GET
 * (`GET /trpc/products.byId?input=…`), not batched, not streamed. It answers exactly what
 * `fetchRequestHandler` answers (status, headers, body; `test/integration/query-fast-path.test.ts`
 * compares the two over every query procedure, good and bad input), built from tRPC's public
 * server API (`callTRPCProcedure`, `getTRPCErrorShape`, `transformTRPCResponse`), but without
 * the adapter's general machinery: per-request abort-signal combinations, two URL parses,
 * content-type negotiation, batch bookkeeping. Under load that machinery cost about 45 µs of CPU
 * per request, some 40 % of what the service spent on `products.byId` beyond the raw baseline
 * (bench/README.md).
 *
 * Anything else (POST, batches, `?batch=1`, streaming accept headers, content types, other query
 * parameters, encoded or unknown paths, input that is not JSON, mutations and subscriptions)
 * returns `null` before any work is done, and the caller hands the request to
 * `fetchRequestHandler`.
 */
export async function answerSingleQuery<TRouter extends AnyTRPCRouter>(
  opts: FetchHandlerRequestOptions<TRouter>,
): Promise<Response | null> {
  const { req, router } = opts;
  if (req.method !== "GET") return null;
  const reqHeaders = req.headers;
  if (reqHeaders.has("content-type") || reqHeaders.has("trpc-accept") || reqHeaders.get("accept")?.includes("jsonl")) return null;

  const url = req.url;
  const pathStart = url.indexOf("/", url.indexOf("//") + 2);
  if (pathStart < 0 || !url.startsWith(`${opts.endpoint}/`, pathStart)) return null;
  const queryStart = url.indexOf("?", pathStart);
  const path = url.slice(pathStart + opts.endpoint.length + 1, queryStart < 0 ? undefined : queryStart);
  if (!PLAIN_PATH.test(path)) return null;

  const config = router._def._config;
  if (config.pathSeparator !== undefined && config.pathSeparator !== ".") return null;
  const procedures = router._def.procedures as Record<string, { _def: { type: string } } | undefined>;
  const procedure = Object.hasOwn(procedures, path) ? procedures[path] : undefined;
  if (procedure?._def?.type !== "query") return null;

  let input: unknown;
  if (queryStart >= 0) {
    const params = new URLSearchParams(url.slice(queryStart + 1));
    let names = 0;
    for (const name of params.keys()) if (name !== "input" || ++names > 1) return null;
    const raw = params.get("input");
    if (raw) {
      try {
        input = config.transformer.input.deserialize(JSON.parse(raw));
      } catch {
        return null;
      }
    }
  }

  const resHeaders = new Headers();
  const call = { batchIndex: 0, path, procedure, getRawInput: async () => input, result: () => input };
  // What createContext and responseMeta are told about the request; the URL is parsed only if read.
  const info = {
    isBatchCall: false,
    accept: null,
    calls: [call],
    type: "query",
    connectionParams: null,
    signal: req.signal,
    get url() {
      return new URL(url);
    },
  } as unknown as TRPCRequestInfo;

  let ctx: unknown;
  let answer: { result: { data: unknown } } | { error: unknown };
  let error: TRPCError | undefined;
  try {
    ctx = await opts.createContext?.({ req, resHeaders, info });
    const data = await callTRPCProcedure({
      router,
      path,
      getRawInput: call.getRawInput,
      ctx,
      type: "query",
      signal: req.signal,
      batchIndex: 0,
    });
    answer = { result: { data } };
    if (isDataStream(data)) {
      // tRPC's own answer to a stream returned outside a streaming link, reported without a path.
      error = new TRPCError({ code: "UNSUPPORTED_MEDIA_TYPE", message: STREAM_REFUSED });
      opts.onError?.({ error, path: undefined, input: undefined, ctx: ctx as never, type: "query", req });
      answer = { error: getTRPCErrorShape({ config, error, type: "query", path: undefined, input: undefined, ctx }) };
    }
  } catch (cause) {
    error = getTRPCErrorFromUnknown(cause);
    opts.onError?.({ error, path, input, ctx: ctx as never, type: "query", req });
    answer = { error: getTRPCErrorShape({ config, error, type: "query", path, input, ctx }) };
  }

  const errors = error ? [error] : [];
  let status = getHTTPStatusCode(answer as never, errors);
  const meta = opts.responseMeta?.({
    ctx: ctx as never,
    info,
    paths: [path],
    data: [answer as never],
    errors,
    eagerGeneration: false,
    type: "query",
  });
  if (meta?.headers) {
    const entries = meta.headers instanceof Headers ? [...meta.headers.entries()] : Object.entries(meta.headers);
    for (const [key, value] of entries) {
      if (Array.isArray(value)) for (const v of value) resHeaders.append(key, v);
      else if (typeof value === "string") resHeaders.set(key, value);
    }
  }
  if (meta?.status) status = meta.status;

  const headers = new Headers(BASE_HEADERS);
  for (const [key, value] of resHeaders) headers.append(key, value);
  return new Response(JSON.stringify(transformTRPCResponse(config, answer as never)), { status, headers });
}

// A procedure path as the clients send it: no percent-encoding (decoding is the adapter's job),
// no comma (a batch).
const PLAIN_PATH = /^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*$/;

// The header order of fetchRequestHandler's answer: `vary` first, then `content-type`.
const BASE_HEADERS: [string, string][] = [
  ["vary", "trpc-accept, accept"],
  ["content-type", "application/json"],
];

const STREAM_REFUSED = "Cannot use stream-like response in non-streaming request - use httpBatchStreamLink";

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isAsyncIterable = (v: unknown) => isObject(v) && Symbol.asyncIterator in v;
const isPromise = (v: unknown) =>
  (isObject(v) || typeof v === "function") &&
  typeof (v as { then?: unknown }).then === "function" &&
  typeof (v as { catch?: unknown }).catch === "function";

/** tRPC's test for data only a streaming link can carry (an async iterable, or promises inside). */
function isDataStream(value: unknown): boolean {
  if (!isObject(value)) return false;
  if (isAsyncIterable(value)) return true;
  const values = Object.values(value);
  return values.some(isPromise) || values.some(isAsyncIterable);
}
