// The Deno host: the Bun host's steps (validate env, open the database, migrate, bootstrap, serve,
// jobs, graceful stop) on Deno.serve. Relative imports stay extensionless as everywhere else in
// src/; deno.json turns on sloppy imports for that, and nodeModulesDir "manual" makes Deno load
// npm packages (and the @node-rs/argon2 native addon) from the node_modules npm installed.
// `npm run start:deno` runs it with the permissions named in package.json (docs/operations.md).
import { createApp } from "./app";
import { openDatabase, operatorMessage, prepareDatabase, resolveJwtSecret } from "./bootstrap";
import { createDeps } from "./deps";
import { parseEnvOrExit } from "./env";
import { startHostJobs } from "./jobs/host";
import { createLogger, describeError } from "./lib/logger";

// The few Deno runtime types used here; the project type-checks against bun-types, and Deno's
// own lib would redeclare the same globals.
interface DenoServer {
  readonly addr: { hostname: string; port: number };
  shutdown(): Promise<void>;
}
interface DenoServeHandlerInfo {
  remoteAddr: { hostname: string };
}
declare const Deno: {
  env: { toObject(): Record<string, string> };
  serve(
    options: { hostname: string; port: number; onListen?: (addr: { hostname: string; port: number }) => void },
    handler: (request: Request, info: DenoServeHandlerInfo) => Response | Promise<Response>,
  ): DenoServer;
  addSignalListener(signal: "SIGTERM" | "SIGINT", handler: () => void): void;
  exit(code: number): never;
};

/** The lock's socket names are fixed so that `--allow-net=unix:<path>` can grant them (start:deno). */
const DENO_LOCK_SOCKET = "owner.sock.deno";

/** How long a stop waits for the requests in hand before shutting down regardless. */
const DRAIN_TIMEOUT_MS = 10_000;

async function main() {
  const env = parseEnvOrExit(Deno.env.toObject());
  const logger = createLogger(env.LOG_LEVEL);
  // One owner per DATA_DIR: openDatabase takes the lock before PGlite opens (src/db/data-dir-lock.ts).
  const handle = await openDatabase(env, { command: "deno server", tempSocketName: DENO_LOCK_SOCKET }).catch((error) => {
    console.error(operatorMessage(error, env));
    return Deno.exit(1);
  });
  try {
    await prepareDatabase(handle, env, logger);
  } catch (error) {
    const where = env.DATABASE_URL ? "the database at DATABASE_URL" : `the embedded database under ${env.DATA_DIR}`;
    console.error(`Cannot start: ${where} is not usable: ${error instanceof Error ? error.message : String(error)}`);
    await handle.close().catch(() => {});
    Deno.exit(1);
  }
  const deps = createDeps(env, handle, { jwtSecret: await resolveJwtSecret(env), logger });
  const app = createApp(deps);

  // Deno's shutdown() cuts the body of a request that is still arriving ("BadResource: Cannot
  // read request body as underlying resource unavailable"), so a stop first lets the requests
  // already being handled finish, answering new ones 503, and only then shuts the server down.
  let inFlight = 0;
  let draining = false;
  let drained: (() => void) | undefined;
  const handler = async (req: Request, info: DenoServeHandlerInfo) => {
    if (draining) {
      return Response.json(
        { error: { message: "The server is shutting down; try again in a moment" } },
        { status: 503, headers: { "retry-after": "1", connection: "close" } },
      );
    }
    inFlight++;
    try {
      return await app.fetch(req, { socketAddress: info.remoteAddr.hostname });
    } finally {
      if (--inFlight === 0) drained?.();
    }
  };

  let server: DenoServer;
  try {
    server = Deno.serve(
      // onListen is replaced so Deno does not print its own "Listening on" line beside the JSON log.
      { hostname: env.HOST, port: env.PORT, onListen: () => {} },
      handler,
    );
  } catch (error) {
    console.error(
      `Cannot start: HOST/PORT ${env.HOST}:${env.PORT} is not usable: ${error instanceof Error ? error.message : String(error)}`,
    );
    await handle.close().catch(() => {});
    Deno.exit(1);
  }
  const { hostname, port } = server.addr;
  const shown = hostname.includes(":") ? `[${hostname}]` : hostname;
  logger.info("listening", {
    url: `http://${shown}:${port}`,
    database: handle.kind,
    runtime: "deno",
    ...(handle.kind === "pglite" ? { dataDir: env.DATA_DIR } : {}),
  });
  const stopJobs = startHostJobs(deps);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down", { signal });
    stopJobs?.();
    draining = true;
    if (inFlight > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => (drained = resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, DRAIN_TIMEOUT_MS))),
      ]);
      clearTimeout(timer);
    }
    // shutdown(): no new connections; responses still being sent (streamed batches) finish.
    await server.shutdown();
    await handle.close().catch((error) => logger.error("closing the database failed", describeError(error)));
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", () => void shutdown("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => void shutdown("SIGINT"));
}

main().catch((error) => {
  console.error(`Cannot start: ${error instanceof Error ? error.message : String(error)}`);
  console.error(JSON.stringify(describeError(error)));
  Deno.exit(1);
});
