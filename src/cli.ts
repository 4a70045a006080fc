// `npm run db:migrate`, `npm run db:seed [-- --dev]`, `npm run job -- <name>`,
// `npm run restore -- <backup id | latest> [--to <postgres url>] [--force]`.
import { join } from "node:path";
import { openDatabase, operatorMessage, prepareDatabase, resolveJwtSecret, seedAdmin } from "./bootstrap";
import { acquireDataDirLock, DataDirBusyError, DataDirUnusableError } from "./db/data-dir-lock";
import { applyStatementTimeout, runMigrations } from "./db/migrate";
import { seedCatalog, seedDevData } from "./db/seed";
import { createDeps } from "./deps";
import { type Env, parseEnvOrExit } from "./env";
import { isJobName, jobNames } from "./jobs/types";
import { createLogger } from "./lib/logger";

const USAGE = "usage: cli.ts migrate | seed [--dev] | job <name> | restore <backup id | latest> [--to <postgres url>] [--force]";
const JOB_USAGE = `usage: npm run job -- <name>, where <name> is one of: ${jobNames.join(", ")}`;
const RESTORE_USAGE = "usage: npm run restore -- <backup id | latest> [--to <postgres url>] [--force]";

/** Thrown for anything the operator must change; main prints its message as the one line. */
class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || !["migrate", "seed", "job", "restore"].includes(command)) {
    console.error(USAGE);
    return 2;
  }
  if (command === "job" && !isJobName(rest[0])) {
    console.error(rest[0] ? `unknown job "${rest[0].slice(0, 40)}": ${JOB_USAGE}` : JOB_USAGE);
    return 2;
  }
  // A migration, a seed or a restore signs no token: they need only the database URL.
  const env = parseEnvOrExit(process.env, { requireJwtSecret: command === "job" });
  const logger = createLogger(env.LOG_LEVEL);
  if (command === "restore") return restore(env, rest);
  if (command === "job") {
    const viaServer = await jobThroughRunningServer(env, rest[0]!);
    if (viaServer !== undefined) return viaServer;
  }
  // Migrations are a maintenance connection: direct when DATABASE_DIRECT_URL is given.
  const dbEnv = command === "migrate" && env.DATABASE_DIRECT_URL ? { ...env, DATABASE_URL: env.DATABASE_DIRECT_URL } : env;
  const handle = await openDatabase(dbEnv, { command: [command, ...rest].join(" ").slice(0, 80) });
  try {
    switch (command) {
      case "migrate": {
        const { applied } = await runMigrations(handle.db);
        if (handle.kind === "postgres") await applyStatementTimeout(handle.db, env.DATABASE_QUERY_TIMEOUT_MS);
        logger.info("migrate done", { applied });
        return 0;
      }
      case "seed": {
        await runMigrations(handle.db);
        const catalog = await seedCatalog(handle.db);
        const admin = await seedAdmin(handle.db, env.ADMIN_EMAIL, env.ADMIN_PASSWORD);
        const dev = rest.includes("--dev") ? await seedDevData(handle.db) : undefined;
        logger.info("seed done", { products: catalog.inserted, admin: admin ?? "ADMIN_EMAIL/ADMIN_PASSWORD not set", dev });
        return 0;
      }
      case "job": {
        await prepareDatabase(handle, { ...env, SEED: false }, logger);
        const { runJobByName } = await import("./jobs");
        const deps = createDeps(env, handle, { jwtSecret: await resolveJwtSecret(env), logger });
        const report = await runJobByName(rest[0], deps);
        console.log(JSON.stringify(report));
        return report.ok ? 0 : 1;
      }
    }
    return 2;
  } finally {
    await handle.close();
  }
}

/**
 * The embedded database while a server holds DATA_DIR: the server runs the job (one owner at a
 * time). `undefined` when nobody holds it, so this process opens the database itself.
 */
async function jobThroughRunningServer(env: Env, name: string): Promise<number | undefined> {
  if (env.DATABASE_URL) return undefined;
  const { runJobThroughOwner } = await import("./jobs/remote");
  const report = await runJobThroughOwner(env.DATA_DIR, name);
  if (!report) return undefined;
  console.error(`DATA_DIR ${env.DATA_DIR} is held by a running server: it ran the job`);
  console.log(JSON.stringify(report));
  return report.ok ? 0 : 1;
}

async function restore(env: Env, args: string[]): Promise<number> {
  const positional: string[] = [];
  let to: string | undefined;
  let force = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--force") force = true;
    else if (args[i] === "--to") to = args[++i];
    else if (args[i]!.startsWith("--to=")) to = args[i]!.slice(5);
    else if (args[i]!.startsWith("--")) throw new UsageError(`unknown option ${args[i]!.slice(0, 20)}: ${RESTORE_USAGE}`);
    else positional.push(args[i]!);
  }
  if (positional.length !== 1) throw new UsageError(RESTORE_USAGE);
  if (to !== undefined && !/^postgres(ql)?:\/\/[^/]/.test(to))
    throw new UsageError(`--to must be a postgres:// or postgresql:// URL: ${RESTORE_USAGE}`);
  const { restoreBackup } = await import("./jobs/backup/restore");
  // The configured database when no --to is given: direct if possible, else through the pooler.
  const targetUrl = to ?? env.DATABASE_DIRECT_URL ?? env.DATABASE_URL;
  // The embedded database is restored only into a DATA_DIR this process holds.
  const lock = targetUrl ? undefined : await acquireDataDirLock(env.DATA_DIR, { command: "restore" });
  try {
    const report = await restoreBackup({
      backupDir: env.BACKUP_DIR,
      backup: positional[0]!,
      targetUrl,
      pgdataDir: join(env.DATA_DIR, "pgdata"),
      force,
    });
    console.log(JSON.stringify({ job: "restore", ...report }));
    if (!report.ok) console.error(`restore did not match its manifest: ${(report.problems ?? []).join("; ")}`);
    return report.ok ? 0 : 1;
  } finally {
    await lock?.release();
  }
}

process.exitCode = await main(process.argv.slice(2)).catch((error) => {
  if (error instanceof DataDirBusyError || error instanceof DataDirUnusableError) console.error(error.message);
  else if (error instanceof UsageError || error?.name === "RestoreRefusedError") console.error(error.message);
  else console.error(operatorMessage(error, parseEnvOrExit(process.env, { requireJwtSecret: false })).replace(/^Cannot start: /, ""));
  return 1;
});
