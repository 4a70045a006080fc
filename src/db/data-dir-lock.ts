// One owner per DATA_DIR. The embedded database (PGlite) has no lock of its own: two processes
// on one data directory each keep their own copy in memory and overwrite each other's files, and
// a second open of a directory in use aborts inside the WASM module. So every process that opens
// it (the server and each CLI command) first takes this lock.
//
// The lock is a Unix domain socket in DATA_DIR that the owner listens on. The kernel closes it
// when the owner dies, however it dies (SIGKILL, power loss), so a socket file left behind only
// refuses connections, and the next owner replaces it: unlike a PID file, a stale lock never
// blocks a start. A live owner answers on the socket, which is also how a CLI asks a running
// server who it is, or to run a job now (see `askDataDirOwner`). Only node:net and node:fs are
// used, so the Bun host, the CLI and a Deno host share it.

import { chmod, link, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join, relative, resolve } from "node:path";
import process from "node:process";

export const LOCK_SOCKET = "owner.sock";
export const LOCK_INFO = "owner.json";

/** What the owner says about itself (also kept in owner.json, for people). */
export interface OwnerInfo {
  pid: number;
  startedAt: string;
  /** "server", or the CLI command ("job backup-full", "restore", …). */
  command: string;
}

/** A request to the owner: `who` always; anything else goes to the owner's handler. */
export type OwnerRequest = { op: string; [key: string]: unknown };
export type OwnerHandler = (request: OwnerRequest) => Promise<unknown>;

export interface DataDirLock {
  readonly dataDir: string;
  readonly info: OwnerInfo;
  /** Answers requests other than `who` (the server runs jobs through this). */
  serve(handler: OwnerHandler): void;
  release(): Promise<void>;
}

/** DATA_DIR is held by another live process. The message is one line naming both. */
export class DataDirBusyError extends Error {
  override name = "DataDirBusyError";
  constructor(
    readonly dataDir: string,
    readonly holder: OwnerInfo | undefined,
  ) {
    super(
      `DATA_DIR ${dataDir} is in use by ${describeOwner(holder)}: the embedded database has one owner at a time; ` +
        "stop that process first (jobs can be run through a running server with npm run job -- <name>)",
    );
  }
}

/** DATA_DIR cannot hold the lock at all (not creatable, not writable, path too long). */
export class DataDirUnusableError extends Error {
  override name = "DataDirUnusableError";
}

export function describeOwner(info: OwnerInfo | undefined): string {
  if (!info) return "another process";
  return `process ${info.pid} (${info.command}, since ${info.startedAt})`;
}

const byteLength = (s: string) => new TextEncoder().encode(s).length;

// sun_path holds 108 bytes on Linux, 104 on macOS.
const MAX_SOCKET_PATH = 100;

function socketPathOf(dataDir: string, name = LOCK_SOCKET): string {
  const absolute = join(resolve(dataDir), name);
  if (byteLength(absolute) <= MAX_SOCKET_PATH) return absolute;
  const rel = relative(process.cwd(), absolute);
  if (byteLength(rel) <= MAX_SOCKET_PATH) return rel;
  throw new DataDirUnusableError(
    `DATA_DIR ${dataDir} is too long a path for its lock socket: use a path under ${MAX_SOCKET_PATH - 12} characters`,
  );
}

const code = (error: unknown) => (error as NodeJS.ErrnoException | undefined)?.code;

/**
 * Connects to the socket at `path`, sends one request, reads one JSON line back.
 * `undefined` when nobody listens there (no file, or a stale one left by a dead owner).
 */
function exchange(path: string, request: OwnerRequest, timeoutMs: number): Promise<{ reply?: unknown; live: boolean }> {
  return new Promise((resolvePromise) => {
    let settled = false;
    let buffer = "";
    let socket: Socket | undefined;
    const done = (result: { reply?: unknown; live: boolean }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket?.destroy();
      resolvePromise(result);
    };
    // Connected but silent past the timeout: still a live owner (busy), just no answer.
    let connected = false;
    const timer = setTimeout(() => done({ live: connected }), timeoutMs);
    socket = createConnection({ path });
    socket.setEncoding("utf8");
    socket.on("connect", () => {
      connected = true;
      socket!.write(`${JSON.stringify(request)}\n`);
    });
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf("\n");
      if (end < 0) return;
      try {
        done({ live: true, reply: JSON.parse(buffer.slice(0, end)) });
      } catch {
        done({ live: true });
      }
    });
    socket.on("error", (error) => {
      // ECONNREFUSED: a socket file nobody listens on (a dead owner's). ENOENT: no file.
      if (code(error) === "ECONNREFUSED" || code(error) === "ENOENT" || code(error) === "ENOTSOCK") done({ live: false });
      else done({ live: connected });
    });
    socket.on("close", () => done({ live: connected }));
  });
}

/** What the owner wrote about itself, for when it is too busy to answer (starting up). */
async function readOwnerFile(dataDir: string): Promise<OwnerInfo | undefined> {
  try {
    const info = JSON.parse(await readFile(join(dataDir, LOCK_INFO), "utf8")) as OwnerInfo;
    return typeof info.pid === "number" ? info : undefined;
  } catch {
    return undefined;
  }
}

/** Asks the live owner of DATA_DIR; `undefined` when DATA_DIR has no live owner. */
export async function askDataDirOwner(dataDir: string, request: OwnerRequest, timeoutMs = 5_000): Promise<{ reply?: unknown } | undefined> {
  const { live, reply } = await exchange(socketPathOf(dataDir), request, timeoutMs);
  return live ? { reply } : undefined;
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const onError = (error: Error) => reject(error);
    server.once("error", onError);
    server.listen({ path, exclusive: true }, () => {
      server.off("error", onError);
      resolvePromise();
    });
  });
}

/**
 * Takes DATA_DIR for this process, or throws `DataDirBusyError` naming the live owner. Nothing
 * in DATA_DIR but the lock's own two files is touched before the lock is held.
 */
export interface LockOptions {
  command?: string;
  /**
   * A fixed name for the socket this process binds before linking it into place, instead of a
   * random one. Deno grants Unix sockets by exact path (`--allow-net=unix:<path>`), so its host
   * names this one in its permissions (package.json, start:deno).
   */
  tempSocketName?: string;
}

export async function acquireDataDirLock(dataDir: string, opts: LockOptions = {}): Promise<DataDirLock> {
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const info = await stat(dataDir);
    if (!info.isDirectory()) throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" });
  } catch (error) {
    throw new DataDirUnusableError(
      `DATA_DIR ${dataDir} is not usable (${code(error) ?? (error as Error).message}): point DATA_DIR at a writable directory`,
    );
  }
  const info: OwnerInfo = { pid: process.pid, startedAt: new Date().toISOString(), command: opts.command ?? "server" };
  const lockPath = socketPathOf(dataDir);
  // Bound under a name of its own first, then linked into place: link(2) fails when the lock
  // name exists, so of two processes racing for a free DATA_DIR exactly one wins.
  const tempPath = socketPathOf(dataDir, opts.tempSocketName ?? `.owner.${process.pid}.${Math.random().toString(36).slice(2, 8)}.sock`);
  let handler: OwnerHandler | undefined;
  const server = createServer((socket) => {
    socket.setEncoding("utf8");
    let buffer = "";
    socket.on("error", () => socket.destroy());
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf("\n");
      if (end < 0) {
        if (buffer.length > 64 * 1024) socket.destroy();
        return;
      }
      let request: OwnerRequest;
      try {
        request = JSON.parse(buffer.slice(0, end)) as OwnerRequest;
      } catch {
        socket.end(`${JSON.stringify({ error: "bad request" })}\n`);
        return;
      }
      buffer = "";
      const answer =
        request?.op === "who"
          ? Promise.resolve(info)
          : handler
            ? handler(request).catch((error: unknown) => ({ error: error instanceof Error ? error.message : String(error) }))
            : Promise.resolve({
                error: `${describeOwner(info)} holds DATA_DIR but takes no requests (a server still starting, or a CLI command): try again when it is serving`,
              });
      void answer.then((reply) => {
        if (!socket.destroyed) socket.end(`${JSON.stringify(reply ?? null)}\n`);
      });
    });
  });
  // The lock must not keep a CLI process alive on its own.
  server.unref();

  try {
    if (opts.tempSocketName) {
      // A fixed name may be left by a process that died while taking the lock, or held by one
      // taking it right now: the first is cleared, the second is a live owner-to-be.
      const other = await exchange(tempPath, { op: "who" }, 3_000);
      if (other.live) throw new DataDirBusyError(dataDir, other.reply as OwnerInfo | undefined);
      await rm(tempPath, { force: true });
    }
    await listen(server, tempPath);
    // Whoever may connect may run jobs through a server: the owner only (as for the files).
    await chmod(tempPath, 0o600);
  } catch (error) {
    if (error instanceof DataDirBusyError) throw error;
    throw new DataDirUnusableError(
      `DATA_DIR ${dataDir} is not usable (cannot create its lock socket: ${code(error) ?? (error as Error).message})`,
    );
  }
  const closeTemp = async () => {
    await new Promise<void>((r) => server.close(() => r()));
    await rm(tempPath, { force: true });
  };

  // Replacing a dead owner's socket is itself guarded by a second name, `owner.sock.takeover`,
  // taken the same way: without it, two processes that both found the lock stale could each
  // remove the other's fresh one.
  const takeoverPath = `${lockPath}.takeover`;
  try {
    for (let attempt = 0; ; attempt++) {
      if (attempt > 200) throw new Error("the lock kept changing hands");
      try {
        await link(tempPath, lockPath);
        break;
      } catch (error) {
        if (code(error) !== "EEXIST") throw error;
      }
      // The lock name exists: a live owner answers on it, a dead one's file refuses.
      const holder = await exchange(lockPath, { op: "who" }, 3_000);
      if (holder.live) throw new DataDirBusyError(dataDir, (holder.reply as OwnerInfo | undefined) ?? (await readOwnerFile(dataDir)));
      try {
        await link(tempPath, takeoverPath);
      } catch (error) {
        if (code(error) !== "EEXIST") throw error;
        // Someone else is replacing the stale lock; if they died doing it, clear their claim.
        if (!(await exchange(takeoverPath, { op: "who" }, 3_000)).live) await rm(takeoverPath, { force: true });
        else await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      try {
        const recheck = await exchange(lockPath, { op: "who" }, 3_000);
        if (recheck.live) throw new DataDirBusyError(dataDir, recheck.reply as OwnerInfo | undefined);
        // Still the dead owner's file (nobody can link over an existing name): remove it, take it.
        await rm(lockPath, { force: true });
        try {
          await link(tempPath, lockPath);
          break;
        } catch (error) {
          // A racer linked into the gap: it owns DATA_DIR now (found live on the next round).
          if (code(error) !== "EEXIST") throw error;
        }
      } finally {
        await rm(takeoverPath, { force: true });
      }
    }
  } catch (error) {
    await closeTemp();
    if (error instanceof DataDirBusyError) throw error;
    throw new DataDirUnusableError(`DATA_DIR ${dataDir} is not usable (cannot take its lock: ${code(error) ?? (error as Error).message})`);
  }
  // The lock is held through lockPath; the temporary name is no longer needed.
  await rm(tempPath, { force: true });
  await writeFile(join(dataDir, LOCK_INFO), `${JSON.stringify(info)}\n`, { mode: 0o600 }).catch(() => {});

  let released = false;
  return {
    dataDir,
    info,
    serve(h) {
      handler = h;
    },
    async release() {
      if (released) return;
      released = true;
      // The name goes first, while the socket still answers: nobody takes over a live lock, so
      // nothing can replace it in between and be removed by us.
      await rm(join(dataDir, LOCK_INFO), { force: true });
      await rm(lockPath, { force: true });
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
