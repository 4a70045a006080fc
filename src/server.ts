// The Bun host: validate env, migrate, bootstrap, serve; stop gracefully on SIGTERM/SIGINT.
import { createApp } from "./app";
import { openDatabase, prepareDatabase, resolveJwtSecret } from "./bootstrap";
import { parseEnvOrExit } from "./env";
import { createBufferedWriter, createLogger, describeError } from "./lib/logger";
import { createTokenConfig } from "./lib/tokens";
import { startScheduler } from "./jobs/scheduler";

async function main() {
  const env = parseEnvOrExit(process.env);
  // One line per request; written off the request path (see createBufferedWriter).
  const logger = createLogger(env.LOG_LEVEL, createBufferedWriter().write);
  const handle = await openDatabase(env);
  try {
    await prepareDatabase(handle, env, logger);
  } catch (error) {
    const where = env.DATABASE_URL ? "the database at DATABASE_URL" : `the embedded database under ${env.DATA_DIR}`;
    console.error(`Cannot start: ${where} is not usable: ${error instanceof Error ? error.message : String(error)}`);
    await handle.close().catch(() => {});
    process.exit(1);
  }
  const tokens = createTokenConfig(await resolveJwtSecret(env), env.SESSION_TTL_SECONDS);
  const deps = { db: handle.db, env, logger, tokens, clock: () => new Date() };
  const app = createApp(deps);

  const stopJobs = env.JOBS ? startScheduler({ ...deps, handle }) : undefined;

  let server;
  try {
    server = Bun.serve({
      hostname: env.HOST,
      port: env.PORT,
      fetch: (req, srv) => app.fetch(req, { socketAddress: srv.requestIP(req)?.address }),
    });
  } catch (error) {
    console.error(`Cannot start: HOST/PORT ${env.HOST}:${env.PORT} is not usable: ${error instanceof Error ? error.message : String(error)}`);
    await handle.close().catch(() => {});
    process.exit(1);
  }
  logger.info("listening", { url: `http://${server.hostname}:${server.port}`, database: handle.kind });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down", { signal });
    stopJobs?.();
    // stop(false): no new connections, in-flight requests finish.
    await server.stop(false);
    await handle.close().catch((error) => logger.error("closing the database failed", describeError(error)));
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

main().catch((error) => {
  console.error(`Cannot start: ${error instanceof Error ? error.message : String(error)}`);
  console.error(JSON.stringify(describeError(error)));
  process.exit(1);
});
