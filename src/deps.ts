// What the app, the jobs and the tests are built from, made in one place for every entry point.
import type { Database, DatabaseHandle } from "./db/client";
import type { Env } from "./env";
import { createLogger, type Logger } from "./lib/logger";
import { createTokenConfig, type TokenConfig } from "./lib/tokens";
import type { MailTransport } from "./mail/transport";
import type { Observability } from "./observability";

/** One per process (Bun host, CLI) or per invocation (Worker). */
export interface AppDeps {
  /** The primary: every write, and every read that decides one. */
  db: Database;
  /**
   * The public catalog reads (products.list, products.byId, inventory.get): DATABASE_READ_URL's
   * replica with the primary as its fallback, or `db` itself when no replica is configured.
   */
  readDb: Database;
  env: Env;
  logger: Logger;
  tokens: TokenConfig;
  /** The current time; tests drive it to cross the throttle window without sleeping. */
  clock: () => Date;
  /** Metrics, traces and the slow-statement log, where the host switched them on. */
  observability?: Observability;
  /** Where mail goes; unset → built from env.MAIL_TRANSPORT (src/mail/transport.ts). */
  mail?: MailTransport;
  /** false: queued mail waits for the deliver-mail job instead of going right after commit. */
  mailAfterCommit?: boolean;
}

/** The jobs also need the handle: the backups reach the engine (pg_dump URL, PGlite's dump). */
export interface JobDeps extends AppDeps {
  handle: DatabaseHandle;
}

export interface DepsOverrides {
  /** The embedded default's secret is generated and kept under DATA_DIR (bootstrap.resolveJwtSecret). */
  jwtSecret?: string;
  logger?: Logger;
  clock?: () => Date;
  observability?: Observability;
}

/**
 * The one way dependencies are handed down. Runtime-neutral (no node:fs), so the Worker uses it too;
 * env has been validated by the entry point that calls this.
 */
export function createDeps(env: Env, handle: DatabaseHandle, overrides: DepsOverrides = {}): JobDeps {
  const secret = overrides.jwtSecret ?? env.JWT_SECRET;
  if (!secret) throw new Error("createDeps: JWT_SECRET is required (the embedded default resolves one first)");
  const logger = overrides.logger ?? createLogger(env.LOG_LEVEL);
  // The replica's health outlives a Worker invocation; its warnings go to the newest logger.
  if (handle.replica) handle.replica.health.logger = logger;
  return {
    db: handle.db,
    readDb: handle.replica?.db ?? handle.db,
    env,
    handle,
    logger,
    tokens: createTokenConfig(secret, env.SESSION_TTL_SECONDS),
    clock: overrides.clock ?? (() => new Date()),
    ...(overrides.observability ? { observability: overrides.observability } : {}),
  };
}
