import * as v from "valibot";
import { isCommonPassword } from "./lib/common-passwords";
import { password } from "./lib/validation";

/** OTEL_TRACES_SAMPLER values of the OpenTelemetry specification that this service supports. */
export const TRACES_SAMPLERS = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
] as const;

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

const postgresUrlNamed = (name: string) =>
  v.pipe(
    v.string(),
    v.check((s) => {
      try {
        const u = new URL(s);
        return (u.protocol === "postgres:" || u.protocol === "postgresql:") && u.hostname !== "";
      } catch {
        return false;
      }
    }, `${name} must be a postgres:// or postgresql:// URL with a host`),
  );
const postgresUrl = postgresUrlNamed("DATABASE_URL");

const httpUrl = (name: string) =>
  v.pipe(
    v.string(),
    v.check((s) => {
      try {
        const u = new URL(s);
        return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
      } catch {
        return false;
      }
    }, `${name} must be an http:// or https:// URL`),
  );

// CORS_ORIGINS: comma-separated origins (scheme://host[:port], nothing after it) that browsers
// may call the API from. Unset or empty: no cross-origin access.
const CORS_MESSAGE = "CORS_ORIGINS must be comma-separated origins such as https://shop.example.com,http://localhost:5173";
const corsOrigins = v.optional(
  v.pipe(
    v.string(),
    v.transform((s) =>
      s
        .split(",")
        .map((o) => o.trim())
        .filter((o) => o !== ""),
    ),
    v.check((list) => list.every(isOrigin), CORS_MESSAGE),
  ),
  "",
);

function isOrigin(s: string): boolean {
  try {
    const u = new URL(s);
    return (u.protocol === "http:" || u.protocol === "https:") && u.origin === s;
  } catch {
    return false;
  }
}

const EnvSchema = v.pipe(
  v.object({
    DATABASE_URL: v.optional(postgresUrl),
    // The same database without the pooler: migrations, backups and restores prefer it.
    DATABASE_DIRECT_URL: v.optional(postgresUrlNamed("DATABASE_DIRECT_URL")),
    // A streaming replica for the public catalog reads (docs/operations.md, "Read replica").
    DATABASE_READ_URL: v.optional(postgresUrlNamed("DATABASE_READ_URL")),
    DATABASE_READ_MAX_LAG_SECONDS: v.optional(
      v.pipe(
        v.string(),
        v.regex(/^\d+$/, "DATABASE_READ_MAX_LAG_SECONDS must be an integer from 1 to 3600"),
        v.transform(Number),
        v.minValue(1, "DATABASE_READ_MAX_LAG_SECONDS must be an integer from 1 to 3600"),
        v.maxValue(3600, "DATABASE_READ_MAX_LAG_SECONDS must be an integer from 1 to 3600"),
      ),
    ),
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
    ADMIN_PASSWORD: v.optional(password("ADMIN_PASSWORD")),
    SEED: v.optional(v.picklist(["true", "false", "1", "0"], "SEED must be true or false")),
    TRUST_PROXY: flag("TRUST_PROXY", false),
    JOBS: flag("JOBS", true),
    CORS_ORIGINS: corsOrigins,
    LOG_LEVEL: v.optional(v.picklist(["debug", "info", "warn", "error"], "LOG_LEVEL must be debug, info, warn or error"), "info"),
    // Observability (docs/operations.md#observability).
    METRICS: flag("METRICS", true),
    METRICS_TOKEN: v.optional(
      v.pipe(v.string(), v.regex(/^[\x21-\x7e]{16,256}$/, "METRICS_TOKEN must be 16 to 256 printable characters without spaces")),
    ),
    LOG_SLOW_QUERY_MS: integer("LOG_SLOW_QUERY_MS", 0, 3_600_000, 500),
    OTEL_EXPORTER_OTLP_ENDPOINT: v.optional(httpUrl("OTEL_EXPORTER_OTLP_ENDPOINT")),
    OTEL_SERVICE_NAME: v.optional(
      v.pipe(v.string(), v.maxLength(128, "OTEL_SERVICE_NAME must be at most 128 characters")),
      "commerce-backend",
    ),
    // The OpenTelemetry specification's names and values; the SDK in use does not read them itself.
    OTEL_TRACES_SAMPLER: v.optional(
      v.picklist(TRACES_SAMPLERS, `OTEL_TRACES_SAMPLER must be one of ${TRACES_SAMPLERS.join(", ")}`),
      "parentbased_always_on",
    ),
    OTEL_TRACES_SAMPLER_ARG: v.optional(
      v.pipe(
        v.string(),
        v.transform(Number),
        v.number("OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1 (the share of traces kept)"),
        v.minValue(0, "OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1 (the share of traces kept)"),
        v.maxValue(1, "OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1 (the share of traces kept)"),
      ),
      "1",
    ),
    // --- Accounts: mail, session chains, registration throttle, audit retention ---
    APP_URL: v.optional(
      v.pipe(
        v.string(),
        v.check((s) => /^https?:\/\/[^/\s]+/.test(s), "APP_URL must be an http:// or https:// URL"),
        v.transform((s) => s.replace(/\/+$/, "")),
      ),
    ),
    MAIL_TRANSPORT: v.optional(v.picklist(["log", "file", "smtp"], "MAIL_TRANSPORT must be log, file or smtp"), "log"),
    // Not v.email(): the default (a local host name without a dot) must pass.
    MAIL_FROM: v.optional(
      v.pipe(v.string(), v.trim(), v.regex(/^[^\s@<>]+@[^\s@<>]+$/, "MAIL_FROM must be an email address")),
      "no-reply@localhost",
    ),
    SMTP_URL: v.optional(
      v.pipe(
        v.string(),
        v.check((s) => /^smtps?:\/\/[^/\s]+/.test(s), "SMTP_URL must be an smtp:// or smtps:// URL"),
      ),
    ),
    MAIL_DIR: v.optional(v.pipe(v.string(), v.minLength(1, "MAIL_DIR must not be empty"))),
    SESSION_MAX_AGE_SECONDS: integer("SESSION_MAX_AGE_SECONDS", 60, 31_536_000, 2_592_000),
    REGISTER_LIMIT_PER_HOUR: integer("REGISTER_LIMIT_PER_HOUR", 0, 1_000_000, 30),
    AUDIT_RETENTION_DAYS: integer("AUDIT_RETENTION_DAYS", 1, 36_500, 365),
    // false: every tRPC request goes through tRPC's own fetch adapter, none through
    // src/trpc/query-fast-path.ts (which leans on tRPC internals; patches/README.md, "After an upgrade").
    TRPC_FAST_PATH: flag("TRPC_FAST_PATH", true),
  }),
  v.check((e) => e.MAIL_TRANSPORT !== "smtp" || e.SMTP_URL !== undefined, "SMTP_URL is required when MAIL_TRANSPORT=smtp"),
  v.check(
    (e) => e.ADMIN_PASSWORD === undefined || !isCommonPassword(e.ADMIN_PASSWORD),
    "ADMIN_PASSWORD is one of the most common passwords: choose another",
  ),
  v.check((e) => (e.ADMIN_EMAIL === undefined) === (e.ADMIN_PASSWORD === undefined), "ADMIN_EMAIL and ADMIN_PASSWORD must be set together"),
  v.check(
    (e) => e.DATABASE_READ_URL === undefined || e.DATABASE_URL !== undefined,
    "DATABASE_READ_URL needs DATABASE_URL: a replica serves reads for a Postgres primary, not for the embedded database",
  ),
  v.check(
    (e) => e.DATABASE_READ_MAX_LAG_SECONDS === undefined || e.DATABASE_READ_URL !== undefined,
    "DATABASE_READ_MAX_LAG_SECONDS applies only to a replica: set DATABASE_READ_URL too, or unset it",
  ),
  v.transform((e) => ({
    ...e,
    BACKUP_DIR: e.BACKUP_DIR ?? `${e.DATA_DIR.replace(/\/+$/, "")}/backups`,
    MAIL_DIR: e.MAIL_DIR ?? `${e.DATA_DIR.replace(/\/+$/, "")}/mail`,
    APP_URL: e.APP_URL ?? `http://${e.HOST.includes(":") ? `[${e.HOST}]` : e.HOST}:${e.PORT}`,
    // The embedded database is a demo out of the box, so it gets the sample catalog by default.
    SEED: e.SEED === undefined ? !e.DATABASE_URL : e.SEED === "true" || e.SEED === "1",
  })),
);

export type Env = v.InferOutput<typeof EnvSchema>;

/**
 * Validates the process (or Worker) environment once at an entry point. Empty strings count as
 * unset, so `PORT=` behaves like no PORT at all.
 */
export interface ParseEnvOptions {
  /**
   * false for the CLI commands that sign no token (migrate, seed, restore): a migration needs
   * only the database URL.
   */
  requireJwtSecret?: boolean;
}

export function parseEnv(source: Record<string, unknown>, opts: ParseEnvOptions = {}): Env {
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
  if ((opts.requireJwtSecret ?? true) && result.output.DATABASE_URL && !result.output.JWT_SECRET) {
    throw new EnvError("Invalid environment: JWT_SECRET is required when DATABASE_URL is set (at least 32 bytes)");
  }
  return result.output;
}

/**
 * For the Bun host and the CLI: a bad environment is one line on stderr naming the variable,
 * then exit 1. (The Worker answers 500 instead; it cannot exit.)
 */
export function parseEnvOrExit(source: Record<string, unknown>, opts: ParseEnvOptions = {}): Env {
  try {
    return parseEnv(source, opts);
  } catch (error) {
    if (error instanceof EnvError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
}
