// The Bun host as a process: start-up validation, persistence across restarts, graceful stop,
// and recovery after the database comes back. Needs to start servers itself, so it is skipped
// when the e2e suite runs against an external E2E_BASE_URL.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_JWT_SECRET } from "../support/app";
import { getTestDatabase, onPostgres, prepareStatements } from "../support/db";
import { createTcpRelay, removeDataDir, runServerExpectingExit, startServer, unusedPort } from "../support/server";

const EXTERNAL = Boolean(process.env.E2E_BASE_URL);
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await removeDataDir(d);
});

async function tempDir() {
  const d = await mkdtemp(join(tmpdir(), "commerce-server-"));
  dirs.push(d);
  return d;
}

async function post(baseUrl: string, procedure: string, input: unknown) {
  const res = await fetch(`${baseUrl}/trpc/${procedure}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(input),
  });
  return { status: res.status, body: (await res.json()) as { result?: { data: { accessToken: string; user: { id: string } } } } };
}

describe.skipIf(EXTERNAL)("server process: bad configuration stops start-up with one line", () => {
  test("PORT=abc → exit 1, one stderr line naming PORT", async () => {
    const r = await runServerExpectingExit({ PORT: "abc", DATA_DIR: await tempDir() });
    expect(r.exitCode).toBe(1);
    expect(r.stderrLines).toHaveLength(1);
    expect(r.stderrLines[0]).toContain("PORT");
    expect(r.stderrLines[0]).not.toContain("abc");
  }, 60_000);

  test("DATABASE_URL that is not a Postgres URL → exit 1, one line naming DATABASE_URL", async () => {
    const r = await runServerExpectingExit({ DATABASE_URL: "mysql://db.example.com/shop", JWT_SECRET: TEST_JWT_SECRET });
    expect(r.exitCode).toBe(1);
    expect(r.stderrLines).toHaveLength(1);
    expect(r.stderrLines[0]).toContain("DATABASE_URL");
  }, 60_000);

  test("DATABASE_URL where no database answers → exit 1, one line naming DATABASE_URL", async () => {
    const r = await runServerExpectingExit({
      DATABASE_URL: `postgres://postgres:s3cret-pw@127.0.0.1:${await unusedPort()}/shop`,
      JWT_SECRET: TEST_JWT_SECRET,
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderrLines).toHaveLength(1);
    expect(r.stderrLines[0]).toContain("DATABASE_URL");
    expect(r.stderrLines[0]).not.toContain("s3cret-pw");
  }, 60_000);

  test("DATABASE_URL without JWT_SECRET → exit 1, one line naming JWT_SECRET", async () => {
    const r = await runServerExpectingExit({ DATABASE_URL: "postgres://127.0.0.1/shop" });
    expect(r.exitCode).toBe(1);
    expect(r.stderrLines).toHaveLength(1);
    expect(r.stderrLines[0]).toContain("JWT_SECRET");
  }, 60_000);
});

describe.skipIf(EXTERNAL)("server process: lifecycle", () => {
  // One DATA_DIR for the whole lifecycle: each start of the embedded database costs seconds.
  test("a second start on the same DATA_DIR keeps the data and the JWT secret of the first; the admin exists once", async () => {
    const dataDir = await tempDir();
    const email = `persist-${Date.now().toString(36)}@example.com`;
    const admin = { ADMIN_EMAIL: `boss-${Date.now().toString(36)}@example.com`, ADMIN_PASSWORD: "boss password 1" };
    const env = { SEED: "false", ...admin };

    const first = await startServer({ dataDir, env });
    const registered = await post(first.baseUrl, "auth.register", { email, password: "persistent password" });
    expect(registered.status).toBe(200);
    const adminLogin = await post(first.baseUrl, "auth.login", { email: admin.ADMIN_EMAIL, password: admin.ADMIN_PASSWORD });
    expect((adminLogin.body.result!.data.user as unknown as { role: string }).role).toBe("admin");
    expect(await first.stop()).toBe(0);

    // While the data directory is at rest: a port that is taken stops start-up with one line.
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    try {
      const port = String((blocker.address() as { port: number }).port);
      const r = await runServerExpectingExit({ ...env, PORT: port, DATA_DIR: dataDir });
      expect(r.exitCode).toBe(1);
      expect(r.stderrLines).toHaveLength(1);
      expect(r.stderrLines[0]).toContain("PORT");
    } finally {
      blocker.close();
    }

    const second = await startServer({ dataDir, env });
    try {
      const login = await post(second.baseUrl, "auth.login", { email, password: "persistent password" });
      expect(login.status).toBe(200);
      expect(login.body.result?.data.user.id).toBe(registered.body.result!.data.user.id);
      // A token from before the restart is still valid: the generated secret was kept.
      const me = await fetch(`${second.baseUrl}/trpc/auth.me`, {
        headers: { authorization: `Bearer ${registered.body.result!.data.accessToken}` },
      });
      expect(me.status).toBe(200);
      // The bootstrap ran again without duplicating the admin.
      const again = await post(second.baseUrl, "auth.login", { email: admin.ADMIN_EMAIL, password: admin.ADMIN_PASSWORD });
      expect(again.body.result?.data.user.id).toBe(adminLogin.body.result!.data.user.id);
      expect((await post(second.baseUrl, "auth.register", { email: admin.ADMIN_EMAIL, password: "someone else 1" })).status).toBe(409);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  }, 240_000);

  test.if(onPostgres)(
    "a stopped database makes /health 503, and it recovers when the database returns, without a restart",
    async () => {
      const { url } = await getTestDatabase();
      const target = new URL(url!);
      const relay = await createTcpRelay(target.hostname, Number(target.port || 5432));
      const viaRelay = new URL(url!);
      viaRelay.hostname = "127.0.0.1";
      viaRelay.port = String(relay.port);
      const server = await startServer({
        env: { DATABASE_URL: viaRelay.toString(), JWT_SECRET: TEST_JWT_SECRET, DATABASE_PREPARE: String(prepareStatements) },
      });
      try {
        expect((await fetch(`${server.baseUrl}/health`)).status).toBe(200);
        await relay.down();
        const down = await fetch(`${server.baseUrl}/health`);
        expect(down.status).toBe(503);
        expect(await down.json()).toMatchObject({ db: "down" });
        // A procedure during the outage is a clean INTERNAL error, not a hang or a crash.
        const during = await post(server.baseUrl, "auth.login", { email: "x@example.com", password: "whatever pw" });
        expect(during.status).toBe(500);

        await relay.up();
        let status = 0;
        for (let i = 0; i < 50 && status !== 200; i++) {
          status = (await fetch(`${server.baseUrl}/health`)).status;
          if (status !== 200) await Bun.sleep(200);
        }
        expect(status).toBe(200);
        const email = `recovered-${Date.now().toString(36)}@example.com`;
        expect((await post(server.baseUrl, "auth.register", { email, password: "after the outage" })).status).toBe(200);
      } finally {
        expect(await server.stop()).toBe(0);
        await relay.close();
      }
    },
    120_000,
  );
});

describe.skipIf(EXTERNAL)("server process: graceful stop", () => {
  test("SIGTERM lets an in-flight request finish, then the process exits 0", async () => {
    const server = await startServer({ dataDir: await tempDir() });
    const url = new URL("/trpc/auth.register", server.baseUrl);
    const body = JSON.stringify({ email: "inflight@example.com", password: "in flight password" });
    // The request body arrives in two parts with SIGTERM in between, so the request is
    // provably in flight when the signal lands.
    let sendRest: () => void = () => {};
    const secondHalf = new Promise<void>((resolve) => (sendRest = resolve));
    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        const bytes = new TextEncoder().encode(body);
        controller.enqueue(bytes.slice(0, 10));
        await secondHalf;
        controller.enqueue(bytes.slice(10));
        controller.close();
      },
    });
    const response = fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", connection: "close" },
      body: stream,
      // A streamed request body needs half-duplex.
      duplex: "half",
    });
    await Bun.sleep(300);
    const exited = server.stop();
    await Bun.sleep(300);
    sendRest();
    const res = await response;
    expect(res.status).toBe(200);
    const json = (await res.json()) as { result: { data: { user: { email: string } } } };
    expect(json.result.data.user.email).toBe("inflight@example.com");
    expect(await exited).toBe(0);
    expect(server.output()).toContain('"msg":"shutting down"');
  }, 90_000);
});
