// Catalog reads on a streaming replica (DATABASE_READ_URL), with the primary as the fallback.
// The services never know: the routers hand them `readDb`, a Drizzle database whose client sends
// each statement to the replica while it is healthy and to the primary while it is not. Only
// reads that decide nothing go through it (docs/operations.md, "Read replica"); a write sent
// here by mistake fails on the replica (25006, read-only transaction) instead of landing anywhere.
import type { Logger } from "../lib/logger";

type PostgresClient = import("postgres").Sql;

/** What one replica's health says about where the next read goes. */
export interface ReplicaHealthOptions {
  /** First pause after a connection failure before the replica is tried again. */
  initialBackoffMs?: number;
  /** The pause doubles on each failed retry, up to this. */
  maxBackoffMs?: number;
  /** DATABASE_READ_MAX_LAG_SECONDS: reads go to the primary while replay lags more than this. */
  maxLagSeconds?: number;
  /** How often (at most) the replay lag is asked for, while reads come in. */
  lagCheckIntervalMs?: number;
}

const DEFAULT_INITIAL_BACKOFF_MS = 1000;
const DEFAULT_MAX_BACKOFF_MS = 30_000;
const DEFAULT_LAG_CHECK_INTERVAL_MS = 1000;

// Conditions that say "this server cannot serve you now", not "this statement is wrong":
// class 08 (connection exception; PgBouncer reports its own failures as 08P01), 28 (the replica
// refuses the login), 3D000 (no such database there), 53 (out of connections, memory, disk),
// 57P01-57P03 (shutting down, crashed, starting up: what `pg_ctl stop` sends to open sessions).
const UNAVAILABLE_SQLSTATE = /^(08|28|53)|^3D000$|^57P0[123]$/;
// A standby cancels a read that holds back replay for longer than max_standby_streaming_delay
// ("canceling statement due to conflict with recovery"); the primary has no such conflict.
const RECOVERY_CONFLICT_SQLSTATE = /^(40001|40P01)$/;
// postgres.js's own codes for a lost or never-made connection, and the socket errors beneath them.
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "ConnectionRefused",
  "ConnectionClosed",
]);

/** How a failed replica read is handled: "unavailable" marks the replica down, "conflict" retries once. */
export function replicaFailureKind(error: unknown): "unavailable" | "conflict" | undefined {
  let anyCode = false;
  for (let e: unknown = error, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") {
      anyCode = true;
      if (CONNECTION_CODES.has(code)) return "unavailable";
      if (/^[0-9A-Z]{5}$/.test(code)) {
        if (UNAVAILABLE_SQLSTATE.test(code)) return "unavailable";
        if (RECOVERY_CONFLICT_SQLSTATE.test(code)) return "conflict";
        return undefined;
      }
    }
    e = (e as { cause?: unknown }).cause;
  }
  // Workers' socket API reports a refused or lost connection as a plain Error with no code
  // ("proxy request failed, cannot connect to the specified address", "Network connection
  // lost."), and postgres.js passes it on as it is. Everything the server says has a SQLSTATE and
  // everything postgres.js says has a code, so a plain Error without a code from the driver is
  // the socket; a TypeError or RangeError is a bug here and is not hidden.
  if (!anyCode && error instanceof Error && error.constructor === Error) return "unavailable";
  return undefined;
}

// The replica's replay lag in seconds: 0 when everything received has been replayed (an idle
// primary must not look like lag), else the age of the last replayed commit. 0 on a server that
// is not in recovery (the URL names a primary: nothing to wait for).
const LAG_QUERY = `select case
  when not pg_is_in_recovery() then 0
  when pg_last_wal_receive_lsn() is not distinct from pg_last_wal_replay_lsn() then 0
  else coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp()), 0)
end::float8 as lag`;

/**
 * Where reads go, for one replica URL: down after a connection failure until a back-off has
 * passed (then one read tries again), lagging while the last lag check said so. One warning
 * when the replica goes down or starts lagging, one info line when it is back; the failed retries
 * in between are debug lines.
 */
export class ReplicaHealth {
  logger: Logger | undefined;
  private downUntil = 0;
  private down = false;
  private probing = false;
  private backoffMs: number;
  private lagging = false;
  private lastLagCheck = 0;
  private lagCheck: Promise<void> | undefined;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly maxLagSeconds: number | undefined;
  readonly lagCheckIntervalMs: number;

  constructor(opts: ReplicaHealthOptions = {}) {
    this.initialBackoffMs = opts.initialBackoffMs ?? DEFAULT_INITIAL_BACKOFF_MS;
    this.maxBackoffMs = opts.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS;
    this.maxLagSeconds = opts.maxLagSeconds;
    this.lagCheckIntervalMs = opts.lagCheckIntervalMs ?? DEFAULT_LAG_CHECK_INTERVAL_MS;
    this.backoffMs = this.initialBackoffMs;
  }

  /**
   * Whether the next read may go to the replica; starts a lag check when one is due. Once the
   * back-off has passed, one read tries the replica while the others keep going to the primary:
   * a replica that does not answer at all (a host gone, packets dropped) then holds up that one
   * read for the connect timeout, not every read in flight.
   */
  useReplica(replica: PostgresClient, now = Date.now()): boolean {
    if (this.down) {
      if (now < this.downUntil || this.probing) return false;
      this.probing = true;
      return true;
    }
    if (this.maxLagSeconds !== undefined && !this.lagCheck && now - this.lastLagCheck >= this.lagCheckIntervalMs) {
      this.lastLagCheck = now;
      this.lagCheck = this.checkLag(replica).finally(() => {
        this.lagCheck = undefined;
      });
    }
    return !this.lagging;
  }

  /** The replica answered a read (with rows or with the statement's own error). */
  succeeded(): void {
    this.probing = false;
    if (!this.down) return;
    this.down = false;
    this.backoffMs = this.initialBackoffMs;
    this.logger?.info("read replica is back: catalog reads go to it again");
  }

  /** The replica could not be reached (or refused to serve): reads go to the primary for a while. */
  failed(error: unknown, now = Date.now()): void {
    this.probing = false;
    const retryInMs = this.backoffMs;
    this.downUntil = now + retryInMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
    // The code only: a driver's message can carry the URL's host and user.
    const fields = { code: codeOf(error) ?? "socket error without a code", retryInMs };
    if (this.down) this.logger?.debug("read replica still unreachable", fields);
    else this.logger?.warn("read replica unreachable: catalog reads go to the primary until it answers again", fields);
    this.down = true;
  }

  get state(): "replica" | "down" | "lagging" {
    return this.down && Date.now() < this.downUntil ? "down" : this.lagging ? "lagging" : "replica";
  }

  private async checkLag(replica: PostgresClient): Promise<void> {
    let lag: number;
    try {
      const [row] = await replica.unsafe(LAG_QUERY);
      lag = Number((row as unknown as { lag: unknown }).lag);
    } catch {
      // The reads themselves find out that the replica is down; a failed check changes nothing.
      return;
    }
    const lagging = lag > (this.maxLagSeconds ?? Number.POSITIVE_INFINITY);
    if (lagging && !this.lagging) {
      this.logger?.warn("read replica lags behind: catalog reads go to the primary until it catches up", {
        lagSeconds: Math.round(lag * 10) / 10,
        maxLagSeconds: this.maxLagSeconds,
      });
    } else if (!lagging && this.lagging) {
      this.logger?.info("read replica caught up: catalog reads go to it again", { lagSeconds: Math.round(lag * 10) / 10 });
    }
    this.lagging = lagging;
  }
}

/** The first string `code` on the error or its causes: a SQLSTATE or postgres.js's own. */
function codeOf(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

// One health per replica URL and lag setting, for the life of the process (or, on Workers, of the
// isolate): a Worker opens a new client on every request, and without this each request would
// pay the failed connection again instead of waiting out the back-off.
const healths = new Map<string, ReplicaHealth>();

export function replicaHealthFor(url: string, opts: ReplicaHealthOptions = {}): ReplicaHealth {
  const key = `${url}\u0000${opts.maxLagSeconds ?? ""}`;
  let health = healths.get(key);
  if (!health) {
    health = new ReplicaHealth(opts);
    healths.set(key, health);
  }
  return health;
}

/**
 * A postgres.js client for Drizzle whose statements go to `replica`, or to `primary` while the
 * replica is down or lagging, and again to `primary` when the replica fails one of them for want
 * of a connection (then the replica is marked down) or cancels it for a recovery conflict. Other
 * errors (bad input, a statement timeout) are the statement's own and are thrown as they are:
 * sending a slow query to the primary as well would double the load that made it slow.
 * Only `unsafe` is routed (all Drizzle sends outside transactions); nothing here opens one.
 */
export function readFallbackClient(replica: PostgresClient, primary: PostgresClient, health: ReplicaHealth): PostgresClient {
  const unsafe = (text: string, params?: unknown[], options?: unknown) => {
    // Drizzle calls `.values()` on the query before awaiting it; the query only starts when awaited.
    let values = false;
    const send = (client: PostgresClient) => {
      const q = client.unsafe(text, params as never, options as never);
      return (values ? q.values() : q) as unknown as Promise<unknown>;
    };
    const run = async () => {
      if (!health.useReplica(replica)) return send(primary);
      try {
        const result = await send(replica);
        health.succeeded();
        return result;
      } catch (error) {
        const kind = replicaFailureKind(error);
        if (kind === "unavailable") {
          health.failed(error);
          return send(primary);
        }
        // The replica answered, if only to refuse this statement: it is up.
        health.succeeded();
        if (kind === "conflict") return send(primary);
        throw error;
      }
    };
    const lazy = {
      values() {
        values = true;
        return lazy;
      },
      // biome-ignore lint/suspicious/noThenProperty: the wrapper must stay a thenable, like the query it wraps
      then<R1, R2>(ok?: (v: unknown) => R1, fail?: (e: unknown) => R2) {
        return run().then(ok, fail);
      },
    };
    return lazy;
  };
  return new Proxy(replica, {
    get(target, prop, receiver) {
      if (prop === "unsafe") return unsafe;
      return Reflect.get(target, prop, receiver);
    },
  });
}
