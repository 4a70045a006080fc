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
 * the adapter's general machinery: per-request abort-signal combinations, two URL parses and a
 * URLSearchParams (the one `input` parameter is read by hand, `inputParam`), content-type
 * negotiation, batch bookkeeping, a second Headers object per answer. Under load that machinery
 * cost about 45 µs of CPU per request, some 40 % of what the service spent on `products.byId`
 * beyond the raw baseline (bench/README.md).
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
    const raw = inputParam(url, queryStart + 1);
    if (raw === null) return null;
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

  const body = JSON.stringify(transformTRPCResponse(config, answer as never));
  // Like the adapter, what createContext's resHeaders and responseMeta hold is appended to the
  // two headers of every answer. Usually that is nothing (nothing in src/ writes ctx.resHeaders;
  // responseMeta only adds Retry-After to a throttled error), and then the Response is built from
  // a constant object: one native Headers instead of two and a copy. (Fetch Headers iterate
  // sorted by name, so the order they are given in does not show.)
  if (resHeaders.keys().next().done) return new Response(body, { status, headers: BASE_HEADERS });
  const headers = new Headers(BASE_HEADERS);
  for (const [key, value] of resHeaders) headers.append(key, value);
  return new Response(body, { status, headers });
}

/**
 * The raw value of `input` when the query string (from `start` in `url`) is exactly `input=<value>`
 * or empty (`""`, as if there were none), decoded as URLSearchParams decodes it (`+` is a space,
 * then percent-escapes as UTF-8); `null` for anything else: another parameter, `input` twice, a
 * fragment, `input` without `=`, a malformed escape or one that is not UTF-8. A `null` hands the
 * request to tRPC's adapter, which decides with URLSearchParams itself, so this never has to
 * agree with URLSearchParams on odd input, only on what it accepts. Parsing by hand saves the
 * URLSearchParams object and its iteration on every request.
 */
export function inputParam(url: string, start: number): string | null {
  if (start === url.length) return "";
  if (!url.startsWith("input=", start)) return null;
  const value = url.slice(start + INPUT_PREFIX_LENGTH);
  // One parameter only; `#` would start a fragment, which is not part of the query.
  if (value.includes("&") || value.includes("#")) return null;
  const plus = value.includes("+");
  if (!plus && !value.includes("%")) return value;
  try {
    // `+` first: an escaped plus (`%2B`) must stay a plus.
    return decodeURIComponent(plus ? value.replaceAll("+", " ") : value);
  } catch {
    // A `%` not followed by two hex digits, or bytes that are not UTF-8 (URLSearchParams would
    // keep or replace them instead of failing): left to the adapter.
    return null;
  }
}

const INPUT_PREFIX_LENGTH = "input=".length;

// A procedure path as the clients send it: no percent-encoding (decoding is the adapter's job),
// no comma (a batch).
const PLAIN_PATH = /^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*$/;

// The two headers of fetchRequestHandler's answer to a query.
const BASE_HEADERS = { vary: "trpc-accept, accept", "content-type": "application/json" };

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
