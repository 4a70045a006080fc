// The Worker entry (src/worker.ts) driven directly under Bun: env validation per invocation,
// the Hyperdrive binding, the per-request database and its close, the scheduled handler. The same
// module on real workerd is covered by worker-workerd.test.ts, which .ci/worker.sh runs.
import { afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import { sql } from "drizzle-orm";
import { queryRows } from "../../src/db/client";
import worker from "../../src/worker";
import { TEST_JWT_SECRET, uniqueEmail } from "../support/app";
import { getTestDatabase, onPostgres, prepareStatements, resetDatabase } from "../support/db";

function createContext() {
  const pending: Promise<unknown>[] = [];
  return { ctx: { waitUntil: (p: Promise<unknown>) => void pending.push(p) }, settle: () => Promise.all(pending), pending };
}

const controller = (cron: string) => ({ cron, scheduledTime: Date.now() });

let errors: string[] = [];
let errorSpy: ReturnType<typeof spyOn>;
let logSpy: ReturnType<typeof spyOn>;
beforeEach(() => {
  errors = [];
  errorSpy = spyOn(console, "error").mockImplementation((line: unknown) => void errors.push(String(line)));
  logSpy = spyOn(console, "log").mockImplementation(() => {});
});
afterEach(() => {
  errorSpy.mockRestore();
  logSpy.mockRestore();
});

describe("worker entry: errors", () => {
  test("a bad binding answers 500 with one log line naming it, and the next request is validated again", async () => {
    const bad = { DATABASE_URL: "postgres://db.example.com/app", JWT_SECRET: "too short" };
    for (let i = 0; i < 2; i++) {
      const { ctx } = createContext();
      const res = await worker.fetch(new Request("http://worker/health"), bad, ctx);
      expect(res.status).toBe(500);
      const body = await res.text();
      expect(body).toContain("misconfigured");
      expect(body).not.toContain("JWT_SECRET");
    }
    expect(errors).toHaveLength(2);
    expect(errors[0]).toContain("JWT_SECRET must be at least 32 bytes");
    expect(errors[0].split("\n")).toHaveLength(1);
  });

  test("without DATABASE_URL or HYPERDRIVE the Worker says which is missing (no embedded database on Workers)", async () => {
    const { ctx } = createContext();
    const res = await worker.fetch(new Request("http://worker/health"), { JWT_SECRET: TEST_JWT_SECRET }, ctx);
    expect(res.status).toBe(500);
    expect(errors.join("\n")).toContain("DATABASE_URL (a secret) or a HYPERDRIVE binding is required");
  });

  test("MAIL_TRANSPORT=smtp (or file) is refused with one line saying what to use on Workers", async () => {
    for (const transport of ["smtp", "file"]) {
      errors = [];
      const { ctx } = createContext();
      const bindings = {
        DATABASE_URL: "postgres://db.example.com/app",
        JWT_SECRET: TEST_JWT_SECRET,
        MAIL_TRANSPORT: transport,
        SMTP_URL: "smtp://127.0.0.1:2525",
      };
      const res = await worker.fetch(new Request("http://worker/health"), bindings, ctx);
      expect(res.status).toBe(500);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toContain(`MAIL_TRANSPORT=${transport} is not available on Workers`);
      expect(errors[0]).toContain("MAIL_TRANSPORT=log");
    }
  });

  test("a misconfigured scheduled run logs one line and does not throw", async () => {
    const { ctx } = createContext();
    await worker.scheduled(controller("*/15 * * * *"), { DATABASE_URL: "mysql://x" }, ctx);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain("DATABASE_URL must be a postgres:// or postgresql:// URL");
  });
});

describe("worker entry: security", () => {
  test("a malformed binding's value never reaches the response or the log", async () => {
    const secretish = "postgres://user:hunter2-password@";
    const { ctx } = createContext();
    const res = await worker.fetch(new Request("http://worker/health"), { DATABASE_URL: secretish, JWT_SECRET: TEST_JWT_SECRET }, ctx);
    expect(res.status).toBe(500);
    expect(await res.text()).not.toContain("hunter2");
    expect(errors.join("\n")).not.toContain("hunter2");
  });
});

// The Worker speaks only postgres.js, so these need a Postgres URL (TEST_DATABASE_URL).
const handle = onPostgres ? await getTestDatabase() : undefined;

describe.if(onPostgres)("worker entry: happy (real Postgres)", () => {
  const bindings = {
    DATABASE_URL: handle?.url ?? "",
    JWT_SECRET: TEST_JWT_SECRET,
    DATABASE_PREPARE: String(prepareStatements),
  };
  beforeEach(() => resetDatabase(handle!));

  test("serves the app per request and closes its database after the body is sent", async () => {
    const { ctx, settle, pending } = createContext();
    const res = await worker.fetch(new Request("http://worker/health"), bindings, ctx);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok", db: "ok" });
    expect(pending).toHaveLength(1);
    await settle();
  });

  test("register and login through the Worker entry, the client address taken from cf-connecting-ip", async () => {
    const email = uniqueEmail("worker");
    const post = async (path: string, body: unknown) => {
      const { ctx, settle } = createContext();
      const res = await worker.fetch(
        new Request(`http://worker/trpc/${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", "cf-connecting-ip": "198.51.100.23" },
          body: JSON.stringify(body),
        }),
        bindings,
        ctx,
      );
      const json = (await res.json()) as { result?: { data: { accessToken: string } } };
      await settle();
      return { status: res.status, json };
    };
    expect((await post("auth.register", { email, password: "correct horse battery" })).status).toBe(200);
    const login = await post("auth.login", { email, password: "correct horse battery" });
    expect(login.status).toBe(200);
    expect(login.json.result?.data.accessToken).toBeString();
    expect((await post("auth.login", { email, password: "wrong password!" })).status).toBe(401);
  });

  test("a HYPERDRIVE binding is used instead of DATABASE_URL", async () => {
    const { ctx, settle } = createContext();
    const res = await worker.fetch(
      new Request("http://worker/health"),
      { ...bindings, DATABASE_URL: "postgres://unreachable.invalid:1/none", HYPERDRIVE: { connectionString: bindings.DATABASE_URL } },
      ctx,
    );
    expect(res.status).toBe(200);
    // The database is closed once the body has been read, as the runtime would.
    expect(await res.json()).toEqual({ status: "ok", db: "ok" });
    await settle();
  });

  test("the scheduled handler runs the cron's job: */15 prunes expired sessions", async () => {
    const [user] = await queryRows<{ id: string }>(
      handle!.db,
      sql`insert into users (email, password_hash) values (${uniqueEmail("cron")}, 'x') returning id`,
    );
    await handle!.db.execute(sql`insert into sessions (user_id, token_hash, expires_at) values
      (${user.id}, 'expired', (now() at time zone 'utc') - interval '1 hour'),
      (${user.id}, 'live', (now() at time zone 'utc') + interval '1 hour')`);
    const { ctx } = createContext();
    await worker.scheduled(controller("*/15 * * * *"), bindings, ctx);
    const left = await queryRows<{ token_hash: string }>(handle!.db, sql`select token_hash from sessions order by token_hash`);
    expect(left.map((r) => r.token_hash)).toEqual(["live"]);
    expect(errors).toEqual([]);
  });
});
