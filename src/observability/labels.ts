import { appRouter } from "../routers";

const PROCEDURES = new Set(Object.keys(appRouter._def.procedures as Record<string, unknown>));
const ROUTES = new Set(["/health", "/metrics", "/openapi.json", "/docs"]);
const TRPC_PREFIX = "/trpc/";

/**
 * The bounded `procedure` label of a request: a procedure name of the router, `batch` for a
 * batched call, a known route, or `other`. Never anything a client made up (ids, emails, paths).
 */
export function procedureLabel(path: string): string {
  if (path.startsWith(TRPC_PREFIX)) {
    const name = path.slice(TRPC_PREFIX.length);
    if (PROCEDURES.has(name)) return name;
    return name.includes(",") ? "batch" : "other";
  }
  return ROUTES.has(path) ? path : "other";
}
