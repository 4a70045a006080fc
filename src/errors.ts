/**
 * The closed set of errors a service may throw on purpose. Anything else that escapes a
 * procedure is a bug or an outage and reaches the client only as INTERNAL_SERVER_ERROR.
 * The tRPC mapping lives in one place: src/trpc/errors.ts.
 */
export type DomainErrorKind = "BAD_REQUEST" | "UNAUTHORIZED" | "FORBIDDEN" | "NOT_FOUND" | "CONFLICT" | "TOO_MANY_REQUESTS";

export interface DomainErrorDetails {
  /** Products that are short of stock (CONFLICT on orders.create). */
  productIds?: string[];
  /** Seconds until a throttled caller may try again. */
  retryAfterSeconds?: number;
}

export class DomainError extends Error {
  override name = "DomainError";
  constructor(
    readonly kind: DomainErrorKind,
    message: string,
    readonly details: DomainErrorDetails = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string) => new DomainError("BAD_REQUEST", message);
export const unauthorized = (message = "Not signed in, or the session has ended: sign in again") =>
  new DomainError("UNAUTHORIZED", message);
export const forbidden = (message = "Your account is not allowed to do this") => new DomainError("FORBIDDEN", message);
export const notFound = (what: string) => new DomainError("NOT_FOUND", `${what} not found`);
export const conflict = (message: string, details?: DomainErrorDetails) => new DomainError("CONFLICT", message, details);
export const tooManyRequests = (retryAfterSeconds: number, what = "Too many failed sign-in attempts") =>
  new DomainError("TOO_MANY_REQUESTS", `${what}: try again in ${retryAfterSeconds} seconds`, { retryAfterSeconds });

/** Postgres SQLSTATE of a driver error (postgres.js and PGlite both expose `code`), if any. */
export function sqlState(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
