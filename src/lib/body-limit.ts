// The request body limit of every host. Like hono/body-limit it counts streamed bytes (a body
// without Content-Length), but when the limit is crossed it also cancels the body's stream, so
// the runtime stops reading it at once instead of leaving it open, and the 413 says
// `Connection: close`. hono's version left the stream open: straight to workerd a Node client
// then saw ECONNRESET instead of the 413. (Behind `wrangler dev`'s local proxy a client that keeps
// its upload open gets the 413 headers but never the end of the answer, and the proxy delays
// other requests meanwhile, with either version; the Worker itself answers at once. See
// docs/operations.md, "Request bodies on local workerd".)
import type { Context, MiddlewareHandler } from "hono";

export interface BodyLimitOptions {
  maxBytes: number;
  /** The answer for a body over the limit; `Connection: close` is added to it. */
  tooLarge: (c: Context) => Response;
}

export function bodyLimit({ maxBytes, tooLarge }: BodyLimitOptions): MiddlewareHandler {
  const refuse = (c: Context, body: { cancel(): Promise<void> }) => {
    // Not awaited: cancelling tells the runtime to stop reading; nothing to wait for.
    body.cancel().catch(() => {});
    return tooLarge(c);
  };

  return async (c, next) => {
    const body = c.req.raw.body;
    if (!body) return next();
    const declared = c.req.raw.headers.get("content-length");
    // A declared length is enforced by the runtime's HTTP parser, so it can be trusted up front
    // unless the body is chunked as well (then the length header is ignored by the parser).
    if (declared !== null && !c.req.raw.headers.has("transfer-encoding")) {
      return Number.parseInt(declared, 10) > maxBytes ? refuse(c, body) : next();
    }
    const reader = body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) return refuse(c, reader);
      chunks.push(value);
    }
    const whole = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) {
      whole.set(chunk, offset);
      offset += chunk.byteLength;
    }
    c.req.raw = new Request(c.req.raw, { body: whole });
    return next();
  };
}
