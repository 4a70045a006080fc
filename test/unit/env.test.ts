import { describe, expect, test } from "bun:test";
import { EnvError, parseEnv } from "../../src/env";

const SECRET = "0123456789abcdef0123456789abcdef"; // exactly 32 bytes

/** The one line parseEnv reports for this environment (it must throw). */
function messageOf(env: Record<string, string>): string {
  try {
    parseEnv(env);
  } catch (error) {
    expect(error).toBeInstanceOf(EnvError);
    return (error as Error).message;
  }
  throw new Error("parseEnv accepted an environment it should refuse");
}

describe("env: happy path", () => {
  test("an empty environment gives the documented defaults (embedded database)", () => {
    const env = parseEnv({});
    expect(env.DATABASE_URL).toBeUndefined();
    expect(env.DATABASE_PREPARE).toBe(true);
    expect(env.DATABASE_POOL_MAX).toBe(10);
    expect(env.DATABASE_QUERY_TIMEOUT_MS).toBe(30_000);
    expect(env.DATA_DIR).toBe("./.data");
    expect(env.BACKUP_DIR).toBe("./.data/backups");
    expect(env.HOST).toBe("127.0.0.1");
    expect(env.PORT).toBe(3000);
    expect(env.JWT_SECRET).toBeUndefined();
    expect(env.SESSION_TTL_SECONDS).toBe(604_800);
    expect(env.ADMIN_EMAIL).toBeUndefined();
    expect(env.SEED).toBe(true);
    expect(env.TRUST_PROXY).toBe(false);
  });

  test("with DATABASE_URL: values are parsed, SEED defaults to false", () => {
    const env = parseEnv({
      DATABASE_URL: "postgres://app@db.example.com:6432/shop",
      JWT_SECRET: SECRET,
      DATABASE_PREPARE: "false",
      DATABASE_POOL_MAX: "25",
      DATABASE_QUERY_TIMEOUT_MS: "5000",
      PORT: "8080",
      ADMIN_EMAIL: "  Boss@Example.COM ",
      ADMIN_PASSWORD: "admin password",
    });
    expect(env.DATABASE_URL).toBe("postgres://app@db.example.com:6432/shop");
    expect(env.DATABASE_PREPARE).toBe(false);
    expect(env.DATABASE_POOL_MAX).toBe(25);
    expect(env.DATABASE_QUERY_TIMEOUT_MS).toBe(5000);
    expect(env.PORT).toBe(8080);
    expect(env.ADMIN_EMAIL).toBe("boss@example.com");
    expect(env.SEED).toBe(false);
  });

  test("an empty string counts as unset", () => {
    expect(parseEnv({ PORT: "", DATABASE_URL: "" }).PORT).toBe(3000);
  });
});

describe("env: errors name the variable", () => {
  const cases: Array<[string, Record<string, string>, string]> = [
    ["PORT=abc", { PORT: "abc" }, "PORT"],
    ["PORT=70000", { PORT: "70000" }, "PORT"],
    ["PORT=-1", { PORT: "-1" }, "PORT"],
    ["DATABASE_URL not a URL", { DATABASE_URL: "not a url", JWT_SECRET: SECRET }, "DATABASE_URL"],
    ["DATABASE_URL of another scheme", { DATABASE_URL: "mysql://db.example.com/shop", JWT_SECRET: SECRET }, "DATABASE_URL"],
    ["JWT_SECRET too short", { JWT_SECRET: "short-secret" }, "JWT_SECRET"],
    ["JWT_SECRET missing with DATABASE_URL", { DATABASE_URL: "postgres://db.example.com/shop" }, "JWT_SECRET"],
    ["DATABASE_POOL_MAX=0", { DATABASE_POOL_MAX: "0" }, "DATABASE_POOL_MAX"],
    ["DATABASE_PREPARE=maybe", { DATABASE_PREPARE: "maybe" }, "DATABASE_PREPARE"],
    ["ADMIN_EMAIL without ADMIN_PASSWORD", { ADMIN_EMAIL: "boss@example.com" }, "ADMIN_PASSWORD"],
  ];
  for (const [name, env, variable] of cases) {
    test(`${name} → one line naming ${variable}`, () => {
      const message = messageOf(env);
      expect(message).toContain(variable);
      expect(message.split("\n")).toHaveLength(1);
    });
  }
});

describe("env: security", () => {
  test("a rejected secret or URL is not echoed back", () => {
    expect(messageOf({ JWT_SECRET: "hunter2-is-my-secret" })).not.toContain("hunter2");
    expect(messageOf({ DATABASE_URL: "postgres://:pa55word@", JWT_SECRET: SECRET })).not.toContain("pa55word");
  });
});

describe("env: maintenance connections and CLI commands", () => {
  test("DATABASE_DIRECT_URL is optional, and when set must be a Postgres URL (named in the message)", () => {
    expect(parseEnv({}).DATABASE_DIRECT_URL).toBeUndefined();
    const env = parseEnv({
      DATABASE_URL: "postgres://pooler.example.com/shop",
      DATABASE_DIRECT_URL: "postgres://db.example.com/shop",
      JWT_SECRET: SECRET,
    });
    expect(env.DATABASE_DIRECT_URL).toBe("postgres://db.example.com/shop");
    const message = messageOf({ DATABASE_DIRECT_URL: "mysql://db.example.com/shop" });
    expect(message).toContain("DATABASE_DIRECT_URL");
    expect(message).not.toContain("mysql://db.example.com");
  });

  test("DATABASE_READ_URL is optional, must be a Postgres URL, and needs DATABASE_URL", () => {
    expect(parseEnv({}).DATABASE_READ_URL).toBeUndefined();
    const env = parseEnv({
      DATABASE_URL: "postgres://db.example.com/shop",
      DATABASE_READ_URL: "postgres://replica.example.com/shop",
      DATABASE_READ_MAX_LAG_SECONDS: "5",
      JWT_SECRET: SECRET,
    });
    expect(env.DATABASE_READ_URL).toBe("postgres://replica.example.com/shop");
    expect(env.DATABASE_READ_MAX_LAG_SECONDS).toBe(5);
    const bad = messageOf({ DATABASE_URL: "postgres://db.example.com/shop", DATABASE_READ_URL: "http://replica.example.com/shop" });
    expect(bad).toContain("DATABASE_READ_URL must be a postgres:// or postgresql:// URL");
    expect(bad).not.toContain("replica.example.com");
    // The embedded database has no replica: said, not silently ignored.
    expect(messageOf({ DATABASE_READ_URL: "postgres://replica.example.com/shop" })).toContain("DATABASE_READ_URL needs DATABASE_URL");
  });

  test("DATABASE_READ_MAX_LAG_SECONDS is 1 to 3600 and only with DATABASE_READ_URL", () => {
    const base = { DATABASE_URL: "postgres://db.example.com/shop", DATABASE_READ_URL: "postgres://replica.example.com/shop" };
    for (const value of ["0", "3601", "1.5", "-1", "soon"]) {
      expect(messageOf({ ...base, DATABASE_READ_MAX_LAG_SECONDS: value })).toContain(
        "DATABASE_READ_MAX_LAG_SECONDS must be an integer from 1 to 3600",
      );
    }
    expect(messageOf({ DATABASE_URL: base.DATABASE_URL, DATABASE_READ_MAX_LAG_SECONDS: "5" })).toContain("set DATABASE_READ_URL too");
  });

  test("a command that signs no token (migrate, seed, restore) needs only the database URL", () => {
    const env = parseEnv({ DATABASE_URL: "postgres://db.example.com/shop" }, { requireJwtSecret: false });
    expect(env.DATABASE_URL).toBe("postgres://db.example.com/shop");
    expect(() => parseEnv({ DATABASE_URL: "postgres://db.example.com/shop" })).toThrow("JWT_SECRET");
  });
});

describe("env: TRPC_FAST_PATH", () => {
  test("on unless switched off", () => {
    expect(parseEnv({}).TRPC_FAST_PATH).toBe(true);
    expect(parseEnv({ TRPC_FAST_PATH: "false" }).TRPC_FAST_PATH).toBe(false);
    expect(parseEnv({ TRPC_FAST_PATH: "0" }).TRPC_FAST_PATH).toBe(false);
    expect(parseEnv({ TRPC_FAST_PATH: "true" }).TRPC_FAST_PATH).toBe(true);
  });

  test("errors: anything but true or false is refused, naming the variable", () => {
    expect(messageOf({ TRPC_FAST_PATH: "off" })).toBe("Invalid environment: TRPC_FAST_PATH must be true or false");
  });
});
