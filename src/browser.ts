// What browsers get: the usual security headers on every answer, and CORS for the origins in
// CORS_ORIGINS only. A request from any other origin passes through untouched, so it gets no
// Access-Control-* header at all and the browser refuses to hand the answer to the page.
import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import { NONCE, secureHeaders } from "hono/secure-headers";

/** JSON answers never need to load anything: the strictest policy there is. */
const apiHeaders = secureHeaders({
  contentSecurityPolicy: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"] },
});

/**
 * The reference page runs one script (served by us, under a per-response nonce) that injects its
 * own styles and loads the document from this origin; nothing is fetched from anywhere else.
 */
const referenceHeaders = secureHeaders({
  contentSecurityPolicy: {
    defaultSrc: ["'self'"],
    scriptSrc: [NONCE],
    styleSrc: ["'self'", "'unsafe-inline'"],
    imgSrc: ["'self'", "data:"],
    fontSrc: ["'self'", "data:"],
    connectSrc: ["'self'"],
    workerSrc: ["'self'", "blob:"],
    objectSrc: ["'none'"],
    frameAncestors: ["'none'"],
    baseUri: ["'none'"],
  },
});

export const REFERENCE_PATH = "/docs";

export const securityHeaders: MiddlewareHandler = (c, next) =>
  c.req.path === REFERENCE_PATH || c.req.path.startsWith(`${REFERENCE_PATH}/`) ? referenceHeaders(c, next) : apiHeaders(c, next);

/** CORS for exactly these origins; `undefined` when none are configured (no cross-origin access). */
export function corsFor(origins: readonly string[]): MiddlewareHandler | undefined {
  if (origins.length === 0) return undefined;
  const allowed = new Set(origins);
  const handler = cors({
    origin: (origin) => (allowed.has(origin) ? origin : null),
    allowMethods: ["GET", "POST", "OPTIONS"],
    allowHeaders: ["authorization", "content-type", "x-request-id"],
    exposeHeaders: ["x-request-id", "retry-after"],
    maxAge: 600,
  });
  return async (c, next) => {
    // A preflight is answered by the cors middleware itself, as a Response of its own.
    const preflight = allowed.has(c.req.header("origin") ?? "") ? await handler(c, next) : await next();
    const res = preflight instanceof Response ? preflight : c.res;
    // The answer differs by Origin, so a shared cache must not hand one origin's copy to another.
    if (!res.headers.get("vary")?.includes("Origin")) res.headers.append("Vary", "Origin");
    return preflight instanceof Response ? preflight : undefined;
  };
}
