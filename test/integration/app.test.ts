import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createApp, MAX_BODY_BYTES } from "../../src/app";
import { createPgliteDatabase, createPostgresDatabase, type DatabaseHandle } from "../../src/db/client";
import { createLogger } from "../../src/lib/logger";
import { createTestDeps, signUp, uniqueEmail } from "../support/app";
import { getTestDatabase, TEST_DATABASE_URL, withDatabaseName } from "../support/db";
import { serveInProcess, unusedPort } from "../support/server";

// Argon2 and PGlite are CPU-bound and CI machines are small: generous per-test limits, no timing asserts.
setDefaultTimeout(60_000);

const handle = await getTestDatabase();
// An embedded database that was closed: every query on it fails, as after a crash or shutdown.
const closedPglite = await createPgliteDatabase(undefined);
await closedPglite.close();

type ErrorBody = { error: { message: string; code: number; data: Record<string, unknown> & { code: string; httpStatus: number } } };

const post = (body: unknown, headers: Record<string, string> = {}) => ({
  method: "POST",
  headers: { "content-type": "application/json", ...headers },
  body: typeof body === "string" ? body : JSON.stringify(body),
});

/** A port nothing listens on: what a stopped database looks like from here. */
/**
 * A real database without the schema, so every query of a procedure fails inside the driver
 * with a genuine SQL error (42P01, `relation "…" does not exist`): PGlite, or a fresh empty
 * database on the Postgres server.
 */
async function unmigratedDatabase(): Promise<DatabaseHandle> {
  if (!TEST_DATABASE_URL) return createPgliteDatabase(undefined);
  const serverUrl = TEST_DATABASE_URL;
  const name = `empty_${process.pid}_${Date.now().toString(36)}`;
  const admin = await createPostgresDatabase({ url: serverUrl, poolMax: 1, prepare: false });
  await admin.db.execute(sql.raw(`create database "${name}"`));
  await admin.close();
  const handle = await createPostgresDatabase({ url: withDatabaseName(serverUrl, name), poolMax: 2, prepare: false });
  return {
    ...handle,
    // Dropped afterwards, so a pooler does not keep server connections open to it.
    async close() {
      await handle.close();
      const again = await createPostgresDatabase({ url: serverUrl, poolMax: 1, prepare: false });
      await again.db.execute(sql.raw(`drop database if exists "${name}" with (force)`));
      await again.close();
    },
  };
}

describe("app: happy path", () => {
  test("GET /health is 200 {status: ok, db: ok}", async () => {
    const res = await createApp(createTestDeps(handle.db)).request("/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok", db: "ok" });
  });

  test("every response carries an x-request-id; a well-formed incoming one is kept, a bad one replaced", async () => {
    const app = createApp(createTestDeps(handle.db));
    const responses = [
      await app.request("/health"),
      await app.request("/trpc/auth.me"),
      await app.request("/trpc/nope.nothing"),
      await app.request("/no/such/path"),
      await app.request("/trpc/auth.register", post("x".repeat(MAX_BODY_BYTES + 10))),
    ];
    const ids = responses.map((r) => r.headers.get("x-request-id"));
    for (const id of ids) expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Set(ids).size).toBe(ids.length);

    const kept = await app.request("/health", { headers: { "x-request-id": "edge-7f3a.42_b" } });
    expect(kept.headers.get("x-request-id")).toBe("edge-7f3a.42_b");
    for (const bad of ["has spaces in it", "x".repeat(200), "<script>"]) {
      const replaced = await app.request("/health", { headers: { "x-request-id": bad } });
      expect(replaced.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  test("the request id of a procedure's response is in its error data", async () => {
    const app = createApp(createTestDeps(handle.db));
    const res = await app.request("/trpc/auth.me", { headers: { "x-request-id": "trace-123" } });
    const body = (await res.json()) as ErrorBody;
    expect(res.status).toBe(401);
    expect(body.error.data.requestId).toBe("trace-123");
  });

  test("one log line per request, as JSON, with the request id and status", async () => {
    const lines: string[] = [];
    const app = createApp({ ...createTestDeps(handle.db), logger: createLogger("info", (l) => lines.push(l)) });
    await app.request("/health", { headers: { "x-request-id": "log-line-1" } });
    const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.requestId === "log-line-1");
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ level: "info", method: "GET", path: "/health", status: 200 });
  });
});

describe("app: errors", () => {
  test("/health is 503 with db: down when the database does not answer (nothing listening)", async () => {
    const dead = await createPostgresDatabase({ url: `postgres://postgres@127.0.0.1:${await unusedPort()}/x`, poolMax: 1, prepare: false });
    try {
      const res = await createApp(createTestDeps(dead.db)).request("/health");
      expect(res.status).toBe(503);
      expect(((await res.json()) as { db: string }).db).toBe("down");
    } finally {
      await dead.close();
    }
  });

  test("/health is 503 with db: down on a closed embedded database", async () => {
    const res = await createApp(createTestDeps(closedPglite.db)).request("/health");
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ db: "down" });
  });

  test("a 5 MB body is 413, with or without a content-length, and the app keeps serving", async () => {
    const server = serveInProcess(createTestDeps(handle.db));
    try {
      const big = "x".repeat(5 * 1024 * 1024);
      const withLength = await fetch(`${server.baseUrl}/trpc/auth.register`, post(big));
      expect(withLength.status).toBe(413);
      expect(((await withLength.json()) as { error: { message: string } }).error.message).toContain("larger than");

      let streamed = 5 * 16; // 64 KiB chunks: 5 MiB without a content-length
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          controller.enqueue(new Uint8Array(64 * 1024).fill(120));
          if (--streamed === 0) controller.close();
        },
      });
      const chunked = await fetch(`${server.baseUrl}/trpc/auth.register`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: stream,
      });
      expect(chunked.status).toBe(413);
      expect((await fetch(`${server.baseUrl}/health`)).status).toBe(200);
    } finally {
      server.stop();
    }
  });

  test("an unknown procedure is 404 NOT_FOUND as JSON, without a stack", async () => {
    const res = await createApp(createTestDeps(handle.db)).request("/trpc/nope.nothing");
    const text = await res.text();
    const body = JSON.parse(text) as ErrorBody;
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(body.error.data.code).toBe("NOT_FOUND");
    expect(body.error.data.stack).toBeUndefined();
    expect(text).not.toMatch(/at .*\.(ts|js|mjs):\d+/);
    // The path the client asked for is not echoed back in the message.
    expect(body.error.message).not.toContain("nope.nothing");
  });

  test("an unknown path outside /trpc is a JSON 404", async () => {
    const res = await createApp(createTestDeps(handle.db)).request("/admin.php");
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: { message: "Not found" } });
  });

  test("validation errors are 400 BAD_REQUEST naming the field", async () => {
    const deps = createTestDeps(handle.db);
    const app = createApp(deps);
    const bad = await app.request("/trpc/auth.register", post({ email: "nope", password: "long enough" }));
    expect(bad.status).toBe(400);
    const body = (await bad.json()) as ErrorBody;
    expect(body.error.data.code).toBe("BAD_REQUEST");
    expect(body.error.message).toContain("email");

    const { accessToken } = await signUp(deps);
    const res = await app.request("/trpc/auth.revokeSession", post({ sessionId: "12" }, { authorization: `Bearer ${accessToken}` }));
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error.message).toContain("sessionId");
  });

  test("a body that is not JSON is 400 and not echoed; a mutation over GET is 405", async () => {
    const app = createApp(createTestDeps(handle.db));
    const parse = await app.request("/trpc/auth.login", post("{not json: secret-pw-1"));
    expect(parse.status).toBe(400);
    expect(await parse.text()).not.toContain("secret-pw-1");
    const wrongMethod = await app.request("/trpc/auth.login");
    expect(wrongMethod.status).toBe(405);
  });
});

describe("app: security", () => {
  let broken: DatabaseHandle;
  const previousNodeEnv = process.env.NODE_ENV;
  beforeAll(async () => {
    broken = await unmigratedDatabase();
  }, 60_000);
  afterAll(() => broken.close(), 60_000);
  afterEach(() => {
    process.env.NODE_ENV = previousNodeEnv;
  });

  test("a database failure is INTERNAL_SERVER_ERROR with the request id and no SQL, driver text or stack, even in development", async () => {
    process.env.NODE_ENV = "development";
    const lines: string[] = [];
    const app = createApp({ ...createTestDeps(broken.db), logger: createLogger("info", (l) => lines.push(l)) });
    const email = uniqueEmail("internal");
    const res = await app.request(
      "/trpc/auth.login",
      post({ email, password: "a password that is secret" }, { "x-request-id": "req-internal-1" }),
    );
    const text = await res.text();
    const body = JSON.parse(text) as ErrorBody;
    expect(res.status).toBe(500);
    expect(body.error.data.code).toBe("INTERNAL_SERVER_ERROR");
    expect(body.error.message).toContain("req-internal-1");
    expect(body.error.data.requestId).toBe("req-internal-1");
    expect(body.error.data.stack).toBeUndefined();
    for (const leak of [
      "login_throttle",
      "auth_login_read",
      "function",
      "relation",
      "does not exist",
      "insert",
      "select",
      "42P01",
      "Failed query",
      email,
      "secret",
      "    at ",
    ]) {
      expect(text.toLowerCase()).not.toContain(leak.toLowerCase());
    }
    // The server side keeps the detail, under the same request id.
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.level === "error");
    expect(logged).toMatchObject({ requestId: "req-internal-1", path: "auth.login" });
    // The sign-in's first statement calls migration 0009's function, which this database lacks.
    expect(String(logged?.error)).toContain("auth_login_read");
  });

  test("a failure inside a protected procedure's session check is INTERNAL too, never UNAUTHORIZED or a leak", async () => {
    process.env.NODE_ENV = "development";
    const { accessToken } = await signUp(createTestDeps(handle.db));
    const res = await createApp(createTestDeps(broken.db)).request("/trpc/auth.me", {
      headers: { authorization: `Bearer ${accessToken}` },
    });
    const text = await res.text();
    expect(res.status).toBe(500);
    expect(text).not.toContain("sessions");
    expect(text).not.toContain("stack");
  });

  test("a database that went away mid-life (closed embedded database) is INTERNAL without driver text", async () => {
    process.env.NODE_ENV = "development";
    const res = await createApp(createTestDeps(closedPglite.db)).request(
      "/trpc/auth.register",
      post({ email: uniqueEmail(), password: "long enough password" }),
    );
    const body = (await res.json()) as ErrorBody;
    expect(res.status).toBe(500);
    expect(body.error.message).toMatch(/^Something went wrong on our side \(request id [0-9a-f-]{36}\); try again later$/);
    expect(body.error.data.stack).toBeUndefined();
  });
});
