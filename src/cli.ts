// `bun run db:migrate`, `bun run db:seed [--dev]`, `bun run job <name>`.
import { openDatabase, prepareDatabase, resolveJwtSecret } from "./bootstrap";
import { runMigrations, applyStatementTimeout } from "./db/migrate";
import { seedAdmin, seedCatalog, seedDevData } from "./db/seed";
import { parseEnvOrExit } from "./env";
import { createLogger } from "./lib/logger";
import { createTokenConfig } from "./lib/tokens";

const USAGE = "usage: cli.ts migrate | seed [--dev] | job <name>";

async function main(argv: string[]): Promise<number> {
  const env = parseEnvOrExit(process.env);
  const logger = createLogger(env.LOG_LEVEL);
  const [command, ...rest] = argv;
  if (!command || !["migrate", "seed", "job"].includes(command)) {
    console.error(USAGE);
    return 2;
  }
  const handle = await openDatabase(env);
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
        const name = rest[0];
        await prepareDatabase(handle, { ...env, SEED: false }, logger);
        const { runJobByName } = await import("./jobs");
        const tokens = createTokenConfig(await resolveJwtSecret(env), env.SESSION_TTL_SECONDS);
        const report = await runJobByName(name, { db: handle.db, env, logger, tokens, clock: () => new Date(), handle });
        console.log(JSON.stringify(report));
        return report.ok ? 0 : 1;
      }
    }
    return 2;
  } finally {
    await handle.close();
  }
}

process.exitCode = await main(process.argv.slice(2)).catch((error) => {
  console.error(error instanceof Error ? error.message : String(error));
  return 1;
});
