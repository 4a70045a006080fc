// The Bun host: validate env, take DATA_DIR (embedded), migrate, bootstrap, serve; stop
// gracefully on SIGTERM/SIGINT.
import { createApp } from "./app";
import { openDatabase, operatorMessage, prepareDatabase, resolveJwtSecret } from "./bootstrap";
import { createDeps } from "./deps";
import { parseEnvOrExit } from "./env";
import { startHostJobs } from "./jobs/host";
import { createBufferedWriter, createLogger, describeError } from "./lib/logger";
import { createObservability } from "./observability";

/** One line on stderr, exit 1: every start-up failure an operator can fix ends here. */
function stop(message: string): never {
  console.error(message);
  process.exit(1);
}

import { standaloneScriptFromNodeModules } from "./reference";

async function main() {
  const env = parseEnvOrExit(process.env);
  // One line per request; written off the request path (see createBufferedWriter).
  const logger = createLogger(env.LOG_LEVEL, createBufferedWriter().write);
  const observability = createObservability(env, {
    logger,
    poolMax: env.DATABASE_URL ? env.DATABASE_POOL_MAX : 1,
    processMetrics: true,
  });
  const handle = await openDatabase(env, { command: "server", statements: observability.statements }).catch((error) =>
    stop(operatorMessage(error, env)),
  );
  try {
    await prepareDatabase(handle, env, logger);
  } catch (error) {
    const where = env.DATABASE_URL ? "the database at DATABASE_URL" : `the embedded database under DATA_DIR ${env.DATA_DIR}`;
    await handle.close().catch(() => {});
    stop(`Cannot start: ${where} is not usable: ${error instanceof Error ? error.message : String(error)}`);
  }
  const deps = createDeps(env, handle, { jwtSecret: await resolveJwtSecret(env), logger, observability });
  const app = createApp(deps, {
    referenceScript: standaloneScriptFromNodeModules(
      (s) => Bun.resolveSync(s, import.meta.dir),
      (p) => Bun.file(p),
    ),
  });

  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: env.HOST,
      port: env.PORT,
      fetch: (req, srv) => app.fetch(req, { socketAddress: srv.requestIP(req)?.address }),
    });
  } catch (error) {
    await handle.close().catch(() => {});
    stop(listenMessage(error, env.HOST, env.PORT));
  }
  logger.info("listening", {
    url: `http://${server.hostname}:${server.port}`,
    database: handle.kind,
    ...(handle.kind === "pglite" ? { dataDir: env.DATA_DIR } : {}),
  });
  const stopJobs = startHostJobs(deps);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down", { signal });
    stopJobs?.();
    // stop(false): no new connections, in-flight requests finish.
    await server.stop(false);
    await handle.close().catch((error) => logger.error("closing the database failed", describeError(error)));
    await observability.shutdown().catch((error) => logger.error("flushing traces failed", describeError(error)));
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

/** Which of HOST or PORT to fix, from the error Bun.serve threw. */
function listenMessage(error: unknown, host: string, port: number): string {
  const code = (error as { code?: string }).code;
  const text = error instanceof Error ? error.message : String(error);
  if (code === "EADDRINUSE" || /in use/i.test(text)) {
    return `Cannot start: PORT ${port} on ${host} is already in use: stop what listens there or choose another PORT`;
  }
  if (code === "EACCES" || /permission/i.test(text)) {
    return `Cannot start: PORT ${port} needs privileges this process lacks: choose a PORT above 1023`;
  }
  return `Cannot start: HOST ${host} is not an address of this machine (${code ?? text.split("\n")[0]}): set HOST to an IP address such as 127.0.0.1 or 0.0.0.0`;
}

main().catch((error) => {
  console.error(`Cannot start: ${error instanceof Error ? error.message : String(error)}`);
  console.error(JSON.stringify(describeError(error)));
  process.exit(1);
});
