// Start-up steps shared by the Bun host and the CLI (the Worker never migrates: operators run
// `bun run db:migrate` against the database before deploying).
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { count, eq } from "drizzle-orm";
import { readMigrationFiles } from "drizzle-orm/migrator";
import { createPgliteDatabase, createPostgresDatabase, type Database, type DatabaseHandle } from "./db/client";
import { acquireDataDirLock, DataDirBusyError, DataDirUnusableError, type LockOptions } from "./db/data-dir-lock";
import { applyStatementTimeout, migrationsFolder, runMigrations } from "./db/migrate";
import { products, users } from "./db/schema";
import { seedCatalog } from "./db/seed";
import type { Env } from "./env";
import type { Logger } from "./lib/logger";
import type { StatementObserver } from "./observability/statements";
import { ensureAdmin } from "./services/auth";

/**
 * The database this process runs on. The embedded one is opened only after this process holds
 * DATA_DIR's lock (src/db/data-dir-lock.ts), and closing the handle releases it; a DATA_DIR held
 * by another process throws DataDirBusyError before anything under it is touched.
 */
export async function openDatabase(env: Env, opts: LockOptions & { statements?: StatementObserver } = {}): Promise<DatabaseHandle> {
  if (env.DATABASE_URL) {
    return createPostgresDatabase({
      url: env.DATABASE_URL,
      poolMax: env.DATABASE_POOL_MAX,
      prepare: env.DATABASE_PREPARE,
      statements: opts.statements,
      readUrl: env.DATABASE_READ_URL,
      readMaxLagSeconds: env.DATABASE_READ_MAX_LAG_SECONDS,
    });
  }
  const lock = await acquireDataDirLock(env.DATA_DIR, { command: opts.command, tempSocketName: opts.tempSocketName });
  try {
    const handle = await createPgliteDatabase(join(env.DATA_DIR, "pgdata"), opts.statements);
    return {
      ...handle,
      lock,
      async close() {
        try {
          await handle.close();
        } finally {
          await lock.release();
        }
      },
    };
  } catch (error) {
    await lock.release();
    throw new DataDirUnusableError(
      `DATA_DIR ${env.DATA_DIR} is not usable: its embedded database did not open (${error instanceof Error ? error.message : String(error)})`,
    );
  }
}

/** The one line an operator sees when the database cannot be opened. */
export function operatorMessage(error: unknown, env: Env): string {
  if (error instanceof DataDirBusyError || error instanceof DataDirUnusableError) return `Cannot start: ${error.message}`;
  const text = error instanceof Error ? error.message : String(error);
  return env.DATABASE_URL
    ? `Cannot start: the database at DATABASE_URL is not usable: ${text}`
    : `Cannot start: DATA_DIR ${env.DATA_DIR} is not usable: ${text}`;
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

/** The admin of ADMIN_EMAIL/ADMIN_PASSWORD, when both are set (start-up and `db:seed`). */
export async function seedAdmin(db: Database, email: string | undefined, password: string | undefined) {
  if (email && password) return ensureAdmin(db, email, password);
  return undefined;
}

/** Migrates, enforces the statement timeout, makes sure the admin exists, seeds an empty catalog. */
export async function prepareDatabase(handle: DatabaseHandle, env: Env, logger: Logger): Promise<void> {
  // Migrations are a maintenance connection: the direct URL when given (they are pooler-safe
  // without it too: one transaction under a transaction-level lock).
  const direct =
    handle.kind === "postgres" && env.DATABASE_DIRECT_URL
      ? await createPostgresDatabase({ url: env.DATABASE_DIRECT_URL, poolMax: 1, prepare: false })
      : undefined;
  let applied: number;
  try {
    ({ applied } = await runMigrations((direct ?? handle).db));
    if (applied > 0) logger.info("migrations applied", { applied });
    if (handle.kind === "postgres") await applyStatementTimeout((direct ?? handle).db, env.DATABASE_QUERY_TIMEOUT_MS);
  } finally {
    await direct?.close();
  }
  // Every migration applied at once: this start created the database.
  if (handle.kind === "pglite" && applied > 0 && applied === readMigrationFiles({ migrationsFolder }).length) {
    logger.info("embedded database created", { dataDir: env.DATA_DIR, hint: "set DATABASE_URL to use Postgres instead" });
  }
  const admin = await seedAdmin(handle.db, env.ADMIN_EMAIL, env.ADMIN_PASSWORD);
  if (admin) logger.info("admin account ensured", { email: env.ADMIN_EMAIL, created: admin.created });
  else {
    const [{ n }] = await handle.db.select({ n: count() }).from(users).where(eq(users.role, "admin"));
    if (n === 0)
      logger.warn("no admin account yet: set ADMIN_EMAIL and ADMIN_PASSWORD (8 to 128 characters) and start again to create one");
  }
  if (env.SEED) {
    const [{ n }] = await handle.db.select({ n: count() }).from(products);
    if (n === 0) {
      const { inserted } = await seedCatalog(handle.db);
      logger.info("sample catalog loaded", { products: inserted });
    }
  }
}
