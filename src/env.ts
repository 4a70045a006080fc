import * as v from "valibot";

/** Thrown when a variable is missing or malformed; the message names it and says what is wrong. */
export class EnvError extends Error {
  override name = "EnvError";
}

const flag = (name: string, fallback: boolean) =>
  v.optional(
    v.pipe(
      v.picklist(["true", "false", "1", "0"], `${name} must be true or false`),
      v.transform((s) => s === "true" || s === "1"),
    ),
    fallback ? "true" : "false",
  );

const integer = (name: string, min: number, max: number, fallback: number) =>
  v.optional(
    v.pipe(
      v.string(),
      v.regex(/^\d+$/, `${name} must be an integer from ${min} to ${max}`),
      v.transform(Number),
      v.minValue(min, `${name} must be an integer from ${min} to ${max}`),
      v.maxValue(max, `${name} must be an integer from ${min} to ${max}`),
    ),
    String(fallback),
  );

const postgresUrl = v.pipe(
  v.string(),
  v.check((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === "postgres:" || u.protocol === "postgresql:") && u.hostname !== "";
    } catch {
      return false;
    }
  }, "DATABASE_URL must be a postgres:// or postgresql:// URL with a host"),
);

const EnvSchema = v.pipe(
  v.object({
    DATABASE_URL: v.optional(postgresUrl),
    DATABASE_PREPARE: flag("DATABASE_PREPARE", true),
    DATABASE_POOL_MAX: integer("DATABASE_POOL_MAX", 1, 1000, 10),
    DATABASE_QUERY_TIMEOUT_MS: integer("DATABASE_QUERY_TIMEOUT_MS", 1, 3_600_000, 30_000),
    DATA_DIR: v.optional(v.pipe(v.string(), v.minLength(1, "DATA_DIR must not be empty")), "./.data"),
    BACKUP_DIR: v.optional(v.pipe(v.string(), v.minLength(1, "BACKUP_DIR must not be empty"))),
    HOST: v.optional(v.pipe(v.string(), v.minLength(1, "HOST must not be empty")), "127.0.0.1"),
    PORT: integer("PORT", 0, 65535, 3000),
    JWT_SECRET: v.optional(
      v.pipe(
        v.string(),
        v.check((s) => new TextEncoder().encode(s).length >= 32, "JWT_SECRET must be at least 32 bytes"),
      ),
    ),
    SESSION_TTL_SECONDS: integer("SESSION_TTL_SECONDS", 60, 31_536_000, 604_800),
    ADMIN_EMAIL: v.optional(v.pipe(v.string(), v.trim(), v.toLowerCase(), v.email("ADMIN_EMAIL must be an email address"))),
    ADMIN_PASSWORD: v.optional(
      v.pipe(
        v.string(),
        v.minLength(8, "ADMIN_PASSWORD must be 8 to 128 characters"),
        v.maxLength(128, "ADMIN_PASSWORD must be 8 to 128 characters"),
      ),
    ),
    SEED: v.optional(v.picklist(["true", "false", "1", "0"], "SEED must be true or false")),
    TRUST_PROXY: flag("TRUST_PROXY", false),
    JOBS: flag("JOBS", true),
    LOG_LEVEL: v.optional(v.picklist(["debug", "info", "warn", "error"], "LOG_LEVEL must be debug, info, warn or error"), "info"),
    // false: every tRPC request goes through tRPC's own fetch adapter, none through
    // src/trpc/query-fast-path.ts (which leans on tRPC internals; patches/README.md, "After an upgrade").
    TRPC_FAST_PATH: flag("TRPC_FAST_PATH", true),
  }),
  v.check(
    (e) => !(e.DATABASE_URL && !e.JWT_SECRET),
    "JWT_SECRET is required when DATABASE_URL is set (at least 32 bytes)",
  ),
  v.check(
    (e) => (e.ADMIN_EMAIL === undefined) === (e.ADMIN_PASSWORD === undefined),
    "ADMIN_EMAIL and ADMIN_PASSWORD must be set together",
  ),
  v.transform((e) => ({
    ...e,
    BACKUP_DIR: e.BACKUP_DIR ?? `${e.DATA_DIR.replace(/\/+$/, "")}/backups`,
    // The embedded database is a demo out of the box, so it gets the sample catalog by default.
    SEED: e.SEED === undefined ? !e.DATABASE_URL : e.SEED === "true" || e.SEED === "1",
  })),
);

export type Env = v.InferOutput<typeof EnvSchema>;

/**
 * Validates the process (or Worker) environment once at an entry point. Empty strings count as
 * unset, so `PORT=` behaves like no PORT at all.
 */
export function parseEnv(source: Record<string, unknown>): Env {
  const raw: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(source)) {
    if (typeof value === "string" && value !== "") raw[key] = value;
  }
  const result = v.safeParse(EnvSchema, raw);
  if (!result.success) {
    const issue = result.issues[0];
    const key = issue.path?.[0]?.key;
    const message = issue.message.includes(String(key ?? "\u0000"))
      ? issue.message
      : key
        ? `${String(key)}: ${issue.message}`
        : issue.message;
    throw new EnvError(`Invalid environment: ${message}`);
  }
  return result.output;
}

/**
 * For the Bun host and the CLI: a bad environment is one line on stderr naming the variable,
 * then exit 1. (The Worker answers 500 instead; it cannot exit.)
 */
export function parseEnvOrExit(source: Record<string, unknown>): Env {
  try {
    return parseEnv(source);
  } catch (error) {
    if (error instanceof EnvError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
}
