// What browsers get: the usual security headers on every answer, and CORS for the origins in
// CORS_ORIGINS only. A request from any other origin passes through untouched, so it gets no
// Access-Control-* header at all and the browser refuses to hand the answer to the page.
import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import { NONCE, secureHeaders } from "hono/secure-headers";

/** JSON answers never need to load anything: the strictest policy there is. */
export const API_CSP = { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"] };

/**
 * What Hono's `secureHeaders({ contentSecurityPolicy: API_CSP })` sets, as constant pairs:
 * its defaults and the policy above (test/integration/browser-headers.test.ts holds the two
 * equal). The middleware itself is not run for these: per answer it goes through its callback
 * list, a `forEach` and an overwrite check per header, about 0.5 µs more than setting the fixed
 * pairs (in-process, December 2026; the twelve `Headers.set` calls, ~3 µs, are what stays).
 * Lower-case names, as Headers stores them anyway.
 */
export const API_SECURITY_HEADERS: readonly (readonly [string, string])[] = [
  ["cross-origin-resource-policy", "same-origin"],
  ["cross-origin-opener-policy", "same-origin"],
  ["origin-agent-cluster", "?1"],
  ["referrer-policy", "no-referrer"],
  ["strict-transport-security", "max-age=15552000; includeSubDomains"],
  ["x-content-type-options", "nosniff"],
  ["x-dns-prefetch-control", "off"],
  ["x-download-options", "noopen"],
  ["x-frame-options", "SAMEORIGIN"],
  ["x-permitted-cross-domain-policies", "none"],
  ["x-xss-protection", "0"],
  ["content-security-policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"],
];

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

const isReferencePath = (path: string) => path === REFERENCE_PATH || path.startsWith(`${REFERENCE_PATH}/`);

/**
 * The security headers on every answer, overwriting any a handler set, and no X-Powered-By;
 * the reference page gets Hono's middleware itself, which also makes the nonce its script needs.
 */
export const securityHeaders: MiddlewareHandler = async (c, next) => {
  if (isReferencePath(c.req.path)) return referenceHeaders(c, next);
  await next();
  const headers = c.res.headers;
  for (const [name, value] of API_SECURITY_HEADERS) headers.set(name, value);
  headers.delete("x-powered-by");
};

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
