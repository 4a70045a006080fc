// The embedded database's one-owner rule as an operator meets it: real server processes and
// CLI commands on one DATA_DIR (src/db/data-dir-lock.ts, src/jobs/remote.ts, src/server.ts).
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onPostgres } from "../support/db";
import { repoRoot, runServerExpectingExit, startServer } from "../support/server";

setDefaultTimeout(240_000);
const EXTERNAL = Boolean(process.env.E2E_BASE_URL);
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tempDir() {
  const d = await mkdtemp(join(tmpdir(), "commerce-datadir-"));
  dirs.push(d);
  return d;
}

async function post(baseUrl: string, procedure: string, input: unknown) {
  const res = await fetch(`${baseUrl}/trpc/${procedure}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(input),
  });
  return { status: res.status, body: (await res.json()) as { result?: { data: { user: { id: string } } } } };
}

async function cli(args: string[], env: Record<string, string>) {
  const proc = Bun.spawn([process.execPath, "run", "src/cli.ts", ...args], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? tmpdir(), LOG_LEVEL: "warn", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [exitCode, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { exitCode, stdout, stderr, stderrLines: stderr.split("\n").filter((l) => l.trim()) };
}

/** A server as a child process we can SIGKILL (startServer's stop() is SIGTERM). */
async function pidOf(dataDir: string): Promise<number> {
  const { readFile } = await import("node:fs/promises");
  return (JSON.parse(await readFile(join(dataDir, "owner.json"), "utf8")) as { pid: number }).pid;
}

describe.skipIf(EXTERNAL || onPostgres)("DATA_DIR has one owner: happy path", () => {
  test("a job asked for while the server holds DATA_DIR runs in the server, and the server keeps serving", async () => {
    const dataDir = await tempDir();
    const server = await startServer({ dataDir });
    try {
      expect((await post(server.baseUrl, "auth.register", { email: "held@example.com", password: "held password 1" })).status).toBe(200);
      const job = await cli(["job", "backup-full"], { DATA_DIR: dataDir });
      expect(job.exitCode).toBe(0);
      expect(job.stderr).toContain(`DATA_DIR ${dataDir} is held by a running server`);
      const report = JSON.parse(job.stdout.trim().split("\n").at(-1)!) as { ok: boolean; backup: { rows: Record<string, number> } };
      expect(report).toMatchObject({ ok: true, backup: { rows: { users: 1 } } });
      expect((await readdir(join(dataDir, "backups"))).some((f) => f.endsWith(".tar.gz"))).toBe(true);
      expect(server.output()).toContain('"msg":"job requested through DATA_DIR"');
      expect((await post(server.baseUrl, "auth.login", { email: "held@example.com", password: "held password 1" })).status).toBe(200);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  test("SIGKILL the server, start again: it starts, and everything written is there", async () => {
    const dataDir = await tempDir();
    const first = await startServer({ dataDir });
    const registered = await post(first.baseUrl, "auth.register", { email: "survivor@example.com", password: "survivor password" });
    expect(registered.status).toBe(200);
    process.kill(await pidOf(dataDir), "SIGKILL");
    expect(await first.stop()).not.toBe(0);
    const second = await startServer({ dataDir });
    try {
      const login = await post(second.baseUrl, "auth.login", { email: "survivor@example.com", password: "survivor password" });
      expect(login.status).toBe(200);
      expect(login.body.result?.data.user.id).toBe(registered.body.result!.data.user.id);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });
});

describe.skipIf(EXTERNAL || onPostgres)("DATA_DIR has one owner: errors", () => {
  test("a second server on the same DATA_DIR exits non-zero with one line naming DATA_DIR; the first keeps serving; nothing of the second is written", async () => {
    const dataDir = await tempDir();
    const first = await startServer({ dataDir });
    try {
      const second = await runServerExpectingExit(
        { DATA_DIR: dataDir, SEED: "true", ADMIN_EMAIL: "second@example.com", ADMIN_PASSWORD: "second password" },
        120_000,
      );
      expect(second.exitCode).toBe(1);
      expect(second.stderrLines).toHaveLength(1);
      expect(second.stderrLines[0]).toContain(`DATA_DIR ${dataDir}`);
      expect(second.stderrLines[0]).toContain(`process ${await pidOf(dataDir)}`);
      // The first still serves, and the second's admin and catalog were never written.
      const login = await post(first.baseUrl, "auth.login", { email: "second@example.com", password: "second password" });
      expect(login.status).toBe(401);
      const list = await fetch(`${first.baseUrl}/trpc/products.list`);
      expect(((await list.json()) as { result: { data: { items: unknown[] } } }).result.data.items).toHaveLength(0);
    } finally {
      expect(await first.stop()).toBe(0);
    }
  });

  test("a CLI command that would open the database while the server holds it: one line, exit 1, nothing written", async () => {
    const dataDir = await tempDir();
    const server = await startServer({ dataDir });
    try {
      const seed = await cli(["seed"], { DATA_DIR: dataDir, ADMIN_EMAIL: "cli@example.com", ADMIN_PASSWORD: "cli password 1" });
      expect(seed.exitCode).toBe(1);
      expect(seed.stderrLines).toHaveLength(1);
      expect(seed.stderrLines[0]).toContain(`DATA_DIR ${dataDir} is in use by process`);
      expect(seed.stderr).not.toContain("Aborted");
      const restore = await cli(["restore", "latest"], { DATA_DIR: dataDir });
      expect(restore.exitCode).toBe(1);
      expect(restore.stderrLines[0]).toContain(`DATA_DIR ${dataDir} is in use by process`);
      expect((await post(server.baseUrl, "auth.login", { email: "cli@example.com", password: "cli password 1" })).status).toBe(401);
      const list = await fetch(`${server.baseUrl}/trpc/products.list`);
      expect(((await list.json()) as { result: { data: { items: unknown[] } } }).result.data.items).toHaveLength(0);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  test("npm run job with no name, or an unknown one, prints a usage line listing the jobs", async () => {
    const none = await cli(["job"], { DATA_DIR: await tempDir() });
    expect(none.exitCode).toBe(2);
    expect(none.stderrLines).toEqual([expect.stringContaining("usage: npm run job -- <name>")]);
    for (const name of ["prune-sessions", "maintenance", "backup-full", "backup-incremental", "restore-verify"])
      expect(none.stderr).toContain(name);
    const unknown = await cli(["job", "nope"], { DATA_DIR: await tempDir() });
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderrLines[0]).toContain('unknown job "nope"');
  });

  test("DATA_DIR that cannot be created, and a HOST that is no address: one line naming what to fix, no stack, no scheduler", async () => {
    const parent = await tempDir();
    await writeFile(join(parent, "a-file"), "x");
    const badDir = await runServerExpectingExit({ DATA_DIR: join(parent, "a-file", "data"), JOBS: "true" }, 180_000);
    expect(badDir.exitCode).toBe(1);
    expect(badDir.stderrLines).toHaveLength(1);
    expect(badDir.stderrLines[0]).toContain(`DATA_DIR ${join(parent, "a-file", "data")} is not usable`);

    // A fresh DATA_DIR is migrated before the listen is tried: give it the time that takes.
    const badHost = await runServerExpectingExit({ DATA_DIR: await tempDir(), HOST: "not-a-host", JOBS: "true" }, 180_000);
    expect(badHost.exitCode).toBe(1);
    expect(badHost.stderrLines).toHaveLength(1);
    expect(badHost.stderrLines[0]).toContain("HOST not-a-host");
    expect(badHost.stderrLines[0]).toContain("set HOST to an IP address");
    expect(badHost.stdout).not.toContain("scheduler started");
  });
});

describe.skipIf(EXTERNAL || onPostgres)("DATA_DIR has one owner: security and first start", () => {
  test("the first start says where the data lives and how to make an admin; the lock socket is the owner's alone", async () => {
    const dataDir = await tempDir();
    const server = await startServer({ dataDir, env: { JOBS: "true" } });
    try {
      const out = server.output();
      expect(out).toContain(`"msg":"embedded database created","dataDir":"${dataDir}"`);
      expect(out).toContain("no admin account yet: set ADMIN_EMAIL and ADMIN_PASSWORD");
      // The scheduler starts only once the server listens.
      expect(out.indexOf('"msg":"scheduler started"')).toBeGreaterThan(out.indexOf('"msg":"listening"'));
      const { stat } = await import("node:fs/promises");
      expect((await stat(join(dataDir, "owner.sock"))).mode & 0o777).toBe(0o600);
      expect((await stat(dataDir)).mode & 0o077).toBe(0);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
});
