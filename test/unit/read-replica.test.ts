// Which replica failures send a read to the primary, and how the back-off paces the retries.
// The real replica (streaming, stopped and started) is test/integration/read-replica.test.ts.
import { describe, expect, test } from "bun:test";
import { ReplicaHealth, replicaFailureKind } from "../../src/db/read-replica";
import { createLogger } from "../../src/lib/logger";

const err = (code: string, cause?: unknown) => Object.assign(new Error("x"), { code, ...(cause ? { cause } : {}) });
const noClient = undefined as never;

function loggedHealth(opts: ConstructorParameters<typeof ReplicaHealth>[0] = {}) {
  const lines: { level: string; msg: string; [k: string]: unknown }[] = [];
  const health = new ReplicaHealth(opts);
  health.logger = createLogger("debug", (line) => lines.push(JSON.parse(line)));
  return { health, lines };
}

describe("replicaFailureKind", () => {
  test("a lost or refused connection, a shutdown, a refused login or no such database: the replica is unavailable", () => {
    for (const code of ["ECONNREFUSED", "CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED", "CONNECT_TIMEOUT", "ECONNRESET"]) {
      expect(replicaFailureKind(err(code))).toBe("unavailable");
    }
    for (const sqlstate of ["57P01", "57P02", "57P03", "08006", "08P01", "28P01", "3D000", "53300"]) {
      expect(replicaFailureKind(err(sqlstate))).toBe("unavailable");
    }
    // Drizzle wraps the driver's error: the cause decides.
    expect(replicaFailureKind(err("SOMETHING_ELSE"))).toBeUndefined();
    expect(replicaFailureKind(Object.assign(new Error("Failed query"), { cause: err("57P01") }))).toBe("unavailable");
  });

  test("a plain Error without a code (how Workers' sockets report a refused connection) is unavailable; a TypeError is not", () => {
    expect(replicaFailureKind(new Error("proxy request failed, cannot connect to the specified address"))).toBe("unavailable");
    expect(replicaFailureKind(new TypeError("x is not a function"))).toBeUndefined();
    expect(replicaFailureKind(new RangeError("out of range"))).toBeUndefined();
  });

  test("a recovery conflict is retried on the primary without marking the replica down", () => {
    expect(replicaFailureKind(err("40001"))).toBe("conflict");
    expect(replicaFailureKind(err("40P01"))).toBe("conflict");
  });

  test("the statement's own errors are not retried anywhere: bad input, a timeout, a write on the replica", () => {
    for (const sqlstate of ["22P02", "22012", "42P01", "23505", "57014", "25006"]) {
      expect(replicaFailureKind(err(sqlstate))).toBeUndefined();
    }
    expect(replicaFailureKind(undefined)).toBeUndefined();
  });
});

describe("ReplicaHealth", () => {
  test("down after a failure until the back-off has passed; the back-off doubles up to its ceiling", () => {
    const { health } = loggedHealth({ initialBackoffMs: 1000, maxBackoffMs: 4000 });
    expect(health.useReplica(noClient, 0)).toBe(true);
    health.failed(err("ECONNREFUSED"), 0);
    expect(health.useReplica(noClient, 999)).toBe(false);
    expect(health.useReplica(noClient, 1000)).toBe(true); // the retry
    // One read tries; the others go on to the primary until it has an answer.
    expect(health.useReplica(noClient, 1000)).toBe(false);
    expect(health.useReplica(noClient, 1500)).toBe(false);
    health.failed(err("ECONNREFUSED"), 1000);
    expect(health.useReplica(noClient, 2999)).toBe(false);
    expect(health.useReplica(noClient, 3000)).toBe(true);
    health.failed(err("ECONNREFUSED"), 3000);
    expect(health.useReplica(noClient, 6999)).toBe(false);
    health.failed(err("ECONNREFUSED"), 7000);
    // 1 s, 2 s, 4 s, then capped at 4 s.
    expect(health.useReplica(noClient, 10_999)).toBe(false);
    expect(health.useReplica(noClient, 11_000)).toBe(true);
    // The try succeeds: every read goes to the replica again.
    health.succeeded();
    expect(health.useReplica(noClient, 11_001)).toBe(true);
    expect(health.useReplica(noClient, 11_002)).toBe(true);
  });

  test("one warning when it goes down, debug lines for the failed retries, one info line when it is back", () => {
    const { health, lines } = loggedHealth({ initialBackoffMs: 10 });
    health.failed(err("ECONNREFUSED"), 0);
    health.failed(err("ECONNREFUSED"), 20);
    health.failed(err("57P03"), 60);
    health.succeeded();
    health.succeeded();
    expect(lines.map((l) => [l.level, l.code ?? null])).toEqual([
      ["warn", "ECONNREFUSED"],
      ["debug", "ECONNREFUSED"],
      ["debug", "57P03"],
      ["info", null],
    ]);
    // Back up: the next failure starts the back-off from the beginning again.
    health.failed(err("ECONNREFUSED"), 1000);
    expect(lines.at(-1)).toMatchObject({ level: "warn", retryInMs: 10 });
  });

  test("the log line carries the error's code, never its message (which can name the host and user)", () => {
    const { health, lines } = loggedHealth();
    health.failed(Object.assign(new Error('connect ECONNREFUSED replica.internal:5432 user "app"'), { code: "ECONNREFUSED" }), 0);
    expect(JSON.stringify(lines)).not.toContain("replica.internal");
    expect(lines[0]).toMatchObject({ code: "ECONNREFUSED" });
  });
});
