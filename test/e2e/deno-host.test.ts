// The Deno host as a process, started with exactly `npm run start:deno`'s command line and
// permissions (read from package.json, run through sh with `exec` so the signal reaches deno):
// start-up validation, serving, graceful stop. The end-to-end suite itself runs against it in
// .ci/deno.sh. Skipped when the suite runs against an external E2E_BASE_URL.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_JWT_SECRET } from "../support/app";
import { defaultServerEnv, removeDataDir, repoRoot, unusedPort } from "../support/server";

const EXTERNAL = Boolean(process.env.E2E_BASE_URL);
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await removeDataDir(d);
});

async function tempDir() {
  const d = await mkdtemp(join(tmpdir(), "commerce-deno-"));
  dirs.push(d);
  return d;
}

const scripts = JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8")).scripts as Record<string, string>;

function spawnDeno(env: Record<string, string>) {
  const command = scripts["start:deno"].replace(/^deno /, `${join(repoRoot, "node_modules/.bin/deno")} `);
  return Bun.spawn(["sh", "-c", `exec ${command}`], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? tmpdir(),
      NO_COLOR: "1",
      HOST: "127.0.0.1",
      PORT: "0",
      JOBS: "false",
      ...env,
    },
    stdout: "pipe",
    stderr: "pipe",
  });
}

async function expectExit(env: Record<string, string>) {
  const proc = spawnDeno(env);
  const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
  const [exitCode, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  clearTimeout(timer);
  return { exitCode, stderrLines: stderr.split("\n").filter((l) => l.trim() !== "") };
}

describe.skipIf(EXTERNAL)("deno host: happy", () => {
  test("starts on the configured database, serves, and SIGTERM lets an in-flight request finish, then exit 0", async () => {
    const base = await defaultServerEnv(await tempDir());
    const proc = spawnDeno(base.env);
    let out = "";
    const decoder = new TextDecoder();
    const reader = proc.stdout.getReader();
    const baseUrl = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`deno host did not start within 90 s:\n${out}`)), 90_000);
      void (async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return reject(new Error(`deno host exited before listening:\n${out}`));
          out += decoder.decode(value, { stream: true });
          const m = /"msg":"listening","url":"(http:\/\/[^"]+)","database":"(\w+)","runtime":"deno"/.exec(out);
          if (m) {
            clearTimeout(timer);
            return resolve(m[1]);
          }
        }
      })();
    });
    // Keep draining stdout so the host never blocks on a full pipe.
    void (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        out += decoder.decode(value, { stream: true });
      }
    })();
    expect(out).toContain(`"database":"${base.dataDir ? "pglite" : "postgres"}"`);
    expect(await (await fetch(`${baseUrl}/health`)).json()).toEqual({ status: "ok", db: "ok" });

    // The body arrives in two parts with SIGTERM in between: the request is provably in flight.
    const body = new TextEncoder().encode(
      JSON.stringify({ email: `deno-inflight-${Date.now()}@example.com`, password: "in flight password" }),
    );
    let sendRest: () => void = () => {};
    const secondHalf = new Promise<void>((resolve) => (sendRest = resolve));
    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(body.slice(0, 10));
        await secondHalf;
        controller.enqueue(body.slice(10));
        controller.close();
      },
    });
    const response = fetch(`${baseUrl}/trpc/auth.register`, {
      method: "POST",
      headers: { "content-type": "application/json", connection: "close" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    await Bun.sleep(300);
    proc.kill("SIGTERM");
    await Bun.sleep(300);
    sendRest();
    const res = await response;
    expect(res.status).toBe(200);
    expect(await proc.exited).toBe(0);
    expect(out).toContain('"msg":"shutting down","signal":"SIGTERM"');
  }, 150_000);
});

describe.skipIf(EXTERNAL)("deno host: errors", () => {
  test("PORT=abc → exit 1, one stderr line naming PORT", async () => {
    const r = await expectExit({ PORT: "abc", DATA_DIR: await tempDir() });
    expect(r.exitCode).toBe(1);
    expect(r.stderrLines).toHaveLength(1);
    expect(r.stderrLines[0]).toContain("PORT");
    expect(r.stderrLines[0]).not.toContain("abc");
  }, 90_000);

  test("DATABASE_URL without JWT_SECRET → exit 1, one line naming JWT_SECRET", async () => {
    const r = await expectExit({ DATABASE_URL: "postgres://127.0.0.1/shop" });
    expect(r.exitCode).toBe(1);
    expect(r.stderrLines).toHaveLength(1);
    expect(r.stderrLines[0]).toContain("JWT_SECRET");
  }, 90_000);
});

describe.skipIf(EXTERNAL)("deno host: security", () => {
  test("a database that does not answer → exit 1, one line naming DATABASE_URL, no password", async () => {
    const r = await expectExit({
      DATABASE_URL: `postgres://postgres:s3cret-pw@127.0.0.1:${await unusedPort()}/shop`,
      JWT_SECRET: TEST_JWT_SECRET,
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderrLines).toHaveLength(1);
    expect(r.stderrLines[0]).toContain("DATABASE_URL");
    expect(r.stderrLines[0]).not.toContain("s3cret-pw");
  }, 90_000);

  test("the documented permissions are narrow: no -A, no unscoped read, write or ffi", () => {
    const command = scripts["start:deno"];
    expect(command).not.toMatch(/(^| )(-A|--allow-all)( |$)/);
    for (const flag of ["--allow-read", "--allow-write", "--allow-ffi", "--allow-net"]) {
      expect(command).toMatch(new RegExp(`${flag}=\\S+`));
      expect(command).not.toMatch(new RegExp(`${flag}( |$)`));
    }
    expect(command).not.toContain("--allow-sys");
  });
});
