import { expect } from "bun:test";
import { eq, inArray, sql } from "drizzle-orm";
import { createApp } from "../../src/app";
import { type Database, type DatabaseHandle, queryRows } from "../../src/db/client";
import { loginThrottle, products, users } from "../../src/db/schema";
import { type AppDeps, createDeps, type JobDeps } from "../../src/deps";
import { type Env, parseEnv } from "../../src/env";
import { silentLogger } from "../../src/lib/logger";
import { appRouter } from "../../src/routers";
import { createCallerFactory } from "../../src/trpc/init";
import { onPostgres } from "./db";

export const TEST_JWT_SECRET = "test-secret-that-is-at-least-32-bytes-long!!";

/** A clock tests can move: `clock.advance(seconds)`. */
export function createTestClock(start = new Date()) {
  let now = start.getTime();
  const clock = () => new Date(now);
  clock.advance = (seconds: number) => {
    now += seconds * 1000;
  };
  clock.set = (d: Date) => {
    now = d.getTime();
  };
  return clock;
}

/**
 * The app's deps through the same createDeps as every entry point, quiet and with a fixed secret.
 * Given only a Database (most tests), the handle is a stand-in that the app never uses; the jobs
 * need the real handle, so job tests pass that. Registration throttling is off here (suites
 * register many accounts from one address); its own test turns it on.
 */
export function createTestDeps(
  dbOrHandle: Database | DatabaseHandle,
  overrides: Partial<Omit<AppDeps, "env">> & { env?: Partial<Env> } = {},
): JobDeps {
  const { env: envOverrides, logger, clock, ...rest } = overrides;
  // TRPC_FAST_PATH from the shell, so the whole suite can run with the fast path off (.ci/run).
  const env = {
    ...parseEnv({ JWT_SECRET: TEST_JWT_SECRET, REGISTER_LIMIT_PER_HOUR: "0", TRPC_FAST_PATH: process.env.TRPC_FAST_PATH }),
    ...envOverrides,
  };
  const handle: DatabaseHandle = isHandle(dbOrHandle)
    ? dbOrHandle
    : { db: dbOrHandle, kind: onPostgres ? "postgres" : "pglite", close: async () => {} };
  return { ...createDeps(env, handle, { logger: logger ?? silentLogger, clock }), ...rest };
}

function isHandle(x: Database | DatabaseHandle): x is DatabaseHandle {
  return "kind" in x && "close" in x && "db" in x;
}

const createCaller = createCallerFactory(appRouter);

/** A tRPC caller as a given client would be: its token (if any) and its address. */
export function callerFor(deps: AppDeps, opts: { token?: string; clientAddress?: string } = {}) {
  return createCaller({
    ...deps,
    requestId: "test-request",
    accessToken: opts.token ?? null,
    clientAddress: opts.clientAddress ?? "203.0.113.7",
  });
}

let counter = 0;
export const uniqueEmail = (prefix = "user") => `${prefix}-${Date.now().toString(36)}-${++counter}@example.com`;

/** Registers a customer and returns its caller, token and user. */
export async function signUp(deps: AppDeps, email = uniqueEmail(), password = "correct horse battery") {
  const auth = await callerFor(deps).auth.register({ email, password });
  return { ...auth, password, caller: callerFor(deps, { token: auth.accessToken }) };
}

/** Registers an account and promotes it to admin (the role is not reachable through the API). */
export async function signUpAdmin(deps: AppDeps, email = uniqueEmail("admin")) {
  const password = "admin password 123";
  await callerFor(deps).auth.register({ email, password });
  await deps.db.update(users).set({ role: "admin" }).where(eq(users.email, email));
  const auth = await callerFor(deps).auth.login({ email, password });
  return { ...auth, password, caller: callerFor(deps, { token: auth.accessToken }) };
}

/** The tRPC error code of a rejected call, or "no error". */
export async function errorCodeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "no error";
  } catch (error) {
    return (error as { code?: string }).code ?? "not a tRPC error";
  }
}

export interface TrpcHttpError {
  status: number;
  code: string | undefined;
  message: string;
  body: unknown;
}

/**
 * One non-batched call over HTTP, as a plain JSON client makes it: the error comes back through
 * the error formatter, so tests can check what a client really reads (code, message).
 * `input` undefined sends no input; `rawBody` sends a body as is (e.g. not JSON).
 */
export async function callHttp(
  deps: AppDeps,
  procedure: string,
  kind: "query" | "mutation",
  input?: unknown,
  opts: { token?: string; rawBody?: string } = {},
): Promise<{ status: number; data?: unknown; error?: TrpcHttpError }> {
  const app = createApp(deps);
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const query = kind === "query" && input !== undefined ? `?input=${encodeURIComponent(JSON.stringify(input))}` : "";
  const res = await app.request(`/trpc/${procedure}${query}`, {
    method: kind === "query" ? "GET" : "POST",
    headers,
    body: kind === "mutation" ? (opts.rawBody ?? (input === undefined ? undefined : JSON.stringify(input))) : undefined,
  });
  const body = (await res.json()) as { result?: { data?: unknown }; error?: { message: string; data?: { code?: string } } };
  if (body.error) {
    return {
      status: res.status,
      error: { status: res.status, code: body.error.data?.code, message: body.error.message, body },
    };
  }
  return { status: res.status, data: body.result?.data };
}

/** A call refused as bad input: 400 BAD_REQUEST, and no string of the input echoed in the message. */
export function expectBadInputRefused(res: { status: number; error?: TrpcHttpError }, input: unknown): void {
  expect(res.error?.code).toBe("BAD_REQUEST");
  expect(res.status).toBe(400);
  for (const s of stringsIn(input)) expect(res.error!.message).not.toContain(s);
}

/** Every string of two characters or more inside an input: what an error message must not echo. */
export function stringsIn(value: unknown): string[] {
  if (typeof value === "string") return value.length >= 2 ? [value] : [];
  if (value && typeof value === "object") return Object.values(value).flatMap(stringsIn);
  return [];
}

/** Products inserted directly (name, price, stock), for tests that are not about the catalog. */
export async function insertProducts(db: Database, specs: { price: string; stock: number }[], namePrefix = "product") {
  return db
    .insert(products)
    .values(specs.map((s, i) => ({ name: `${namePrefix} ${i}`, price: s.price, stock: s.stock })))
    .returning();
}

/** Current stock by product id. */
export async function stocksOf(db: Database, ids: string[]): Promise<Record<string, number>> {
  const rows = await db.select({ id: products.id, stock: products.stock }).from(products).where(inArray(products.id, ids));
  return Object.fromEntries(rows.map((r) => [r.id, r.stock]));
}

/** A throttle key's failure count, or undefined when it has no row. */
export async function throttleFailures(db: Database, key: string): Promise<number | undefined> {
  const [row] = await queryRows<{ failures: number }>(
    db,
    sql`select ${loginThrottle.failures} from ${loginThrottle} where ${eq(loginThrottle.key, key)}`,
  );
  return row === undefined ? undefined : Number(row.failures);
}
