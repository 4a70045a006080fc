// src/db/data-dir-lock.ts: one owner per DATA_DIR, a lock no death leaves behind.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  acquireDataDirLock,
  askDataDirOwner,
  DataDirBusyError,
  DataDirUnusableError,
  LOCK_INFO,
  LOCK_SOCKET,
} from "../../src/db/data-dir-lock";
import { repoRoot } from "../support/server";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tempDir() {
  const d = await mkdtemp(join(tmpdir(), "lock-test-"));
  dirs.push(d);
  return d;
}

/** A child process that takes the lock, says so, and then holds it or dies by SIGKILL. */
function childHolding(dataDir: string, then: "hold" | "kill") {
  const script = `
    const { acquireDataDirLock } = await import(${JSON.stringify(join(repoRoot, "src/db/data-dir-lock.ts"))});
    await acquireDataDirLock(${JSON.stringify(dataDir)}, { command: "child" });
    console.log("locked");
    ${then === "kill" ? 'process.kill(process.pid, "SIGKILL");' : "setInterval(() => {}, 1000);"}
  `;
  const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
  const locked = (async () => {
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of proc.stdout) {
      text += decoder.decode(chunk);
      if (text.includes("locked")) return;
    }
    throw new Error(`child never took the lock: ${await new Response(proc.stderr).text()}`);
  })();
  return { proc, locked };
}

describe("data-dir lock: happy path", () => {
  test("acquire, release, acquire again; the owner answers who it is", async () => {
    const dir = await tempDir();
    const lock = await acquireDataDirLock(dir, { command: "test-one" });
    expect(lock.info.pid).toBe(process.pid);
    const who = await askDataDirOwner(dir, { op: "who" });
    expect(who?.reply).toMatchObject({ pid: process.pid, command: "test-one" });
    expect(JSON.parse(await readFile(join(dir, LOCK_INFO), "utf8"))).toMatchObject({ pid: process.pid });
    await lock.release();
    expect(await askDataDirOwner(dir, { op: "who" })).toBeUndefined();
    const again = await acquireDataDirLock(dir);
    await again.release();
  });

  test("a lock left by a SIGKILLed process does not block the next owner", async () => {
    const dir = await tempDir();
    const child = childHolding(dir, "kill");
    await child.locked;
    expect(await child.proc.exited).not.toBe(0);
    // The socket file is still there, but nobody listens on it any more.
    expect((await stat(join(dir, LOCK_SOCKET))).isSocket()).toBe(true);
    const lock = await acquireDataDirLock(dir, { command: "after-crash" });
    expect((await askDataDirOwner(dir, { op: "who" }))?.reply).toMatchObject({ command: "after-crash" });
    await lock.release();
  });

  test("the owner's handler answers other requests", async () => {
    const dir = await tempDir();
    const lock = await acquireDataDirLock(dir);
    lock.serve(async (request) => ({ echoed: request.op }));
    expect((await askDataDirOwner(dir, { op: "ping" }))?.reply).toEqual({ echoed: "ping" });
    await lock.release();
  });
});

describe("data-dir lock: errors", () => {
  test("a second owner gets one line naming DATA_DIR and the holding process", async () => {
    const dir = await tempDir();
    const child = childHolding(dir, "hold");
    try {
      await child.locked;
      const error = await acquireDataDirLock(dir).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DataDirBusyError);
      const message = (error as Error).message;
      expect(message).toContain(`DATA_DIR ${dir}`);
      expect(message).toContain(`process ${child.proc.pid}`);
      expect(message).not.toContain("\n");
    } finally {
      child.proc.kill("SIGKILL");
      await child.proc.exited;
    }
  });

  test("in-process racers for a free DATA_DIR: exactly one wins", async () => {
    const dir = await tempDir();
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => acquireDataDirLock(dir)));
    const won = results.filter((r) => r.status === "fulfilled");
    expect(won).toHaveLength(1);
    for (const r of results) if (r.status === "rejected") expect(r.reason).toBeInstanceOf(DataDirBusyError);
    await (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireDataDirLock>>>).value.release();
  });

  test("racers for a DATA_DIR whose owner was SIGKILLed: exactly one takes it over", async () => {
    const dir = await tempDir();
    const child = childHolding(dir, "kill");
    await child.locked;
    await child.proc.exited;
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => acquireDataDirLock(dir)));
    const won = results.filter((r) => r.status === "fulfilled");
    expect(won).toHaveLength(1);
    await (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireDataDirLock>>>).value.release();
  });

  test("a DATA_DIR that cannot be created is named in one line", async () => {
    const parent = await tempDir();
    await writeFile(join(parent, "file"), "x");
    const error = await acquireDataDirLock(join(parent, "file", "data")).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DataDirUnusableError);
    expect((error as Error).message).toStartWith(`DATA_DIR ${join(parent, "file", "data")} is not usable`);
  });

  test("a request with no handler is answered with an error, not a crash", async () => {
    const dir = await tempDir();
    const lock = await acquireDataDirLock(dir, { command: "cli" });
    expect((await askDataDirOwner(dir, { op: "job", name: "backup-full" }))?.reply).toMatchObject({
      error: expect.stringContaining("takes no requests"),
    });
    await lock.release();
  });
});

describe("data-dir lock: security", () => {
  test("only the owner's user may connect: the socket is mode 0600", async () => {
    const dir = await tempDir();
    const lock = await acquireDataDirLock(dir);
    expect((await stat(join(dir, LOCK_SOCKET))).mode & 0o777).toBe(0o600);
    await lock.release();
  });

  test("garbage on the socket gets a refusal and the lock keeps working", async () => {
    const dir = await tempDir();
    const lock = await acquireDataDirLock(dir, { command: "sturdy" });
    const reply = await new Promise<string>((resolve) => {
      const s = createConnection({ path: join(dir, LOCK_SOCKET) });
      let text = "";
      s.on("connect", () => s.write("not json\n"));
      s.on("data", (c) => (text += c));
      s.on("close", () => resolve(text));
    });
    expect(JSON.parse(reply)).toEqual({ error: "bad request" });
    expect((await askDataDirOwner(dir, { op: "who" }))?.reply).toMatchObject({ command: "sturdy" });
    await lock.release();
  });
});
