// The real Bun server as a child process (`bun run src/server.ts`), for the e2e and start-up
// tests, and an in-process server on a real socket for tests that need their own deps (a clock).
import { mkdtemp, rm } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createApp } from "../../src/app";
import type { AppDeps } from "../../src/deps";
import { TEST_JWT_SECRET } from "./app";
import { getTestDatabase, onPostgres, prepareStatements } from "./db";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

export interface RunningServer {
  baseUrl: string;
  dataDir?: string;
  /** Everything the process wrote so far (stdout and stderr). */
  output(): string;
  /** SIGTERM, then waits for the exit code. */
  stop(): Promise<number>;
}

export interface ServerOptions {
  /** Extra or overriding variables; an empty string unsets a default. */
  env?: Record<string, string>;
  /** Reuse a DATA_DIR (PGlite); a fresh temporary one otherwise. Ignored on Postgres. */
  dataDir?: string;
  /** What to run instead of src/server.ts: the bundle of `npm run build`. */
  entry?: string;
}

/**
 * The environment a child server gets: only PATH and HOME from ours (so a DATABASE_URL in the
 * developer's shell cannot leak in), PORT=0 so the OS picks a free port, jobs off.
 */
function childEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? tmpdir(),
    HOST: "127.0.0.1",
    PORT: "0",
    JOBS: "false",
    LOG_LEVEL: "info",
  };
  // Passed on so the whole suite can run with the fast path off (.ci/run).
  if (process.env.TRPC_FAST_PATH) env.TRPC_FAST_PATH = process.env.TRPC_FAST_PATH;
  for (const [k, v] of Object.entries(extra)) {
    if (v === "") delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Reads a stream to the end into `sink`, so the child never blocks on a full pipe. */
function drain(stream: ReadableStream<Uint8Array>, sink: { text: string }, onChunk: () => void) {
  const decoder = new TextDecoder();
  void (async () => {
    for await (const chunk of stream) {
      sink.text += decoder.decode(chunk, { stream: true });
      onChunk();
    }
  })();
}

/** The database a child server should use: this run's Postgres database, or a temp DATA_DIR. */
export async function defaultServerEnv(dataDir?: string): Promise<{ env: Record<string, string>; dataDir?: string }> {
  if (onPostgres) {
    const { url } = await getTestDatabase();
    return {
      env: { DATABASE_URL: url!, JWT_SECRET: TEST_JWT_SECRET, DATABASE_PREPARE: String(prepareStatements), DATABASE_POOL_MAX: "5" },
    };
  }
  const dir = dataDir ?? (await mkdtemp(join(tmpdir(), "commerce-e2e-")));
  return { env: { DATA_DIR: dir, SEED: "false" }, dataDir: dir };
}

/** Starts `bun run src/server.ts` and resolves once it logs "listening" and /health answers. */
export async function startServer(opts: ServerOptions = {}): Promise<RunningServer> {
  const base = await defaultServerEnv(opts.dataDir);
  const proc = Bun.spawn([process.execPath, "run", opts.entry ?? "src/server.ts"], {
    cwd: repoRoot,
    env: childEnv({ ...base.env, ...opts.env }),
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = { text: "" };
  let announce: (() => void) | undefined;
  const onChunk = () => announce?.();
  drain(proc.stdout, out, onChunk);
  drain(proc.stderr, out, onChunk);

  const baseUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start within 60 s:\n${out.text}`)), 60_000);
    announce = () => {
      const m = /"msg":"listening","url":"(http:\/\/[^"]+)"/.exec(out.text);
      if (m) {
        clearTimeout(timer);
        announce = undefined;
        resolve(m[1]);
      }
    };
    void proc.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${out.text}`));
    });
  });
  const health = await fetch(`${baseUrl}/health`);
  if (health.status !== 200) throw new Error(`server started but /health is ${health.status}`);

  return {
    baseUrl,
    dataDir: base.dataDir,
    output: () => out.text,
    async stop() {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      return proc.exited;
    },
  };
}

/** Runs the server with a configuration that must stop it; returns the exit code and output. */
// Generous: a fresh embedded DATA_DIR is migrated before the failing step, slow on a busy machine.
export async function runServerExpectingExit(env: Record<string, string>, timeoutMs = 120_000) {
  const proc = Bun.spawn([process.execPath, "run", "src/server.ts"], {
    cwd: repoRoot,
    env: childEnv(env),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [exitCode, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  clearTimeout(timer);
  return { exitCode, stdout, stderr, stderrLines: stderr.split("\n").filter((l) => l.trim() !== "") };
}

/** Removes a temporary DATA_DIR made by `startServer`. */
export async function removeDataDir(dir: string | undefined) {
  if (dir) await rm(dir, { recursive: true, force: true });
}

/** The app on a real socket in this process, for tests that drive its deps (clock, database). */
export function serveInProcess(deps: AppDeps) {
  const app = createApp(deps);
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req, srv) => app.fetch(req, { socketAddress: srv.requestIP(req)?.address }),
  });
  return { baseUrl: `http://127.0.0.1:${server.port}`, stop: () => server.stop(true) };
}

/**
 * A TCP relay in front of a database, so a test can "stop" the database (refuse and cut every
 * connection) and bring it back on the same port without touching the server others share.
 */
export async function createTcpRelay(targetHost: string, targetPort: number) {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const track = (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => s.destroy());
  };
  const start = () =>
    new Promise<void>((resolve, reject) => {
      const srv = createServer((client) => {
        const upstream = connect(targetPort, targetHost);
        track(client);
        track(upstream);
        client.pipe(upstream);
        upstream.pipe(client);
        client.on("close", () => upstream.destroy());
        upstream.on("close", () => client.destroy());
      });
      srv.once("error", reject);
      srv.listen(port, "127.0.0.1", () => {
        port = (srv.address() as { port: number }).port;
        server = srv;
        resolve();
      });
    });
  await start();
  return {
    get port() {
      return port;
    },
    /** Like a stopped database: every connection is cut and new ones are refused. */
    async down() {
      const srv = server;
      server = undefined;
      for (const s of sockets) s.destroy();
      sockets.clear();
      if (srv) await new Promise<void>((resolve) => srv.close(() => resolve()));
    },
    /** The database is back, on the same port. */
    async up() {
      if (!server) await start();
    },
    close() {
      return this.down();
    },
  };
}

/** A loopback port with nothing listening on it (bound, then released). */
export async function unusedPort(): Promise<number> {
  const { createServer } = await import("node:net");
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}
