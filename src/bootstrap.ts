// Start-up steps shared by the Bun host and the CLI (the Worker never migrates: operators run
// `bun run db:migrate` against the database before deploying).
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { count } from "drizzle-orm";
import { createPgliteDatabase, createPostgresDatabase, type DatabaseHandle } from "./db/client";
import { applyStatementTimeout, runMigrations } from "./db/migrate";
import { products } from "./db/schema";
import { seedAdmin, seedCatalog } from "./db/seed";
import type { Env } from "./env";
import type { Logger } from "./lib/logger";
import type { StatementObserver } from "./observability/statements";

export async function openDatabase(env: Env, statements?: StatementObserver): Promise<DatabaseHandle> {
  if (env.DATABASE_URL) {
    return createPostgresDatabase({ url: env.DATABASE_URL, poolMax: env.DATABASE_POOL_MAX, prepare: env.DATABASE_PREPARE, statements });
  }
  await mkdir(env.DATA_DIR, { recursive: true });
  return createPgliteDatabase(join(env.DATA_DIR, "pgdata"), statements);
}

/**
 * The embedded default has no secret to be given: one is generated on first start and kept
 * under DATA_DIR, so tokens survive restarts. With DATABASE_URL the secret is required (env).
 */
export async function resolveJwtSecret(env: Env): Promise<string> {
  if (env.JWT_SECRET) return env.JWT_SECRET;
  const file = join(env.DATA_DIR, "jwt-secret");
  try {
    const existing = (await readFile(file, "utf8")).trim();
    if (existing.length >= 32) return existing;
  } catch {
    // First start: fall through and create it.
  }
  const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(48))).toString("base64url");
  await mkdir(env.DATA_DIR, { recursive: true });
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}

/** Migrates, enforces the statement timeout, makes sure the admin exists, seeds an empty catalog. */
export async function prepareDatabase(handle: DatabaseHandle, env: Env, logger: Logger): Promise<void> {
  const { applied } = await runMigrations(handle.db);
  if (applied > 0) logger.info("migrations applied", { applied });
  if (handle.kind === "postgres") await applyStatementTimeout(handle.db, env.DATABASE_QUERY_TIMEOUT_MS);
  const admin = await seedAdmin(handle.db, env.ADMIN_EMAIL, env.ADMIN_PASSWORD);
  if (admin) logger.info("admin account ensured", { email: env.ADMIN_EMAIL, created: admin.created });
  if (env.SEED) {
    const [{ n }] = await handle.db.select({ n: count() }).from(products);
    if (n === 0) {
      const { inserted } = await seedCatalog(handle.db);
      logger.info("sample catalog loaded", { products: inserted });
    }
  }
}
