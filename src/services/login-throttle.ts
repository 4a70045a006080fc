import { and, eq, lt, type Placeholder, type SQL, sql } from "drizzle-orm";
import { deleteInBatches } from "../db/batched-delete";
import type { Database } from "../db/client";
import { loginThrottle } from "../db/schema";
import { tooManyRequests } from "../errors";
import { toDbTime } from "../lib/time";

export const THROTTLE_WINDOW_SECONDS = 15 * 60;
/** Attempts per email in one window before every further attempt is refused. */
export const MAX_ATTEMPTS_PER_EMAIL = 10;
/** Per client address the bar is higher: many people can share one address. */
export const MAX_ATTEMPTS_PER_ADDRESS = 100;

export const emailKey = (email: string) => `email:${email}`;
export const addressKey = (address: string) => `ip:${address}`;

/** A value, or a placeholder for it in a statement rendered once (src/db/prepared.ts statementTemplate). */
type Value = string | Placeholder;

/** A counting's times: now, the floor below which a window is over, a new window's end. */
export interface ThrottleWindow {
  now: Value;
  floor: Value;
  expires: Value;
}
export function throttleWindow(windowSeconds: number, now: Date) {
  return {
    now: toDbTime(now),
    floor: toDbTime(new Date(now.getTime() - windowSeconds * 1000)),
    expires: toDbTime(new Date(now.getTime() + windowSeconds * 1000)),
  };
}

/** A counter as the upsert returns it (raw rows carry the columns' own names). */
export type CounterRow = {
  key: string;
  failures: number;
  window_started_at: string;
};

/**
 * Counts one use of every key in one atomic upsert (a fixed window from the first use), as a
 * query builder: awaited on its own (`reserveQuota`, `reserveLoginAttempt`), or sent inside the
 * failed sign-in's statement (`login` in ./auth.ts) through `.getSQL()`. The answer is judged on
 * the count this upsert returns, so concurrent attempts (a batch of 50 logins) cannot slip past
 * the limit between a read and a write.
 */
export function countAttempts(db: Database, keys: Value[], window: ThrottleWindow) {
  const { now: nowText, floor: windowStartFloor, expires } = window;
  const windowOver = sql`${loginThrottle.windowStartedAt} <= ${windowStartFloor}::timestamp`;
  const excluded = (column: { name: string }) => sql`excluded.${sql.identifier(column.name)}`;
  return db
    .insert(loginThrottle)
    .values(keys.map((key) => ({ key, failures: 1, windowStartedAt: nowText, expiresAt: expires })))
    .onConflictDoUpdate({
      target: loginThrottle.key,
      set: {
        failures: sql`case when ${windowOver} then 1 else ${loginThrottle.failures} + 1 end`,
        windowStartedAt: sql`case when ${windowOver} then ${excluded(loginThrottle.windowStartedAt)} else ${loginThrottle.windowStartedAt} end`,
        expiresAt: sql`case when ${windowOver} then ${excluded(loginThrottle.expiresAt)} else ${loginThrottle.expiresAt} end`,
      },
    })
    .returning({
      key: loginThrottle.key,
      failures: loginThrottle.failures,
      window_started_at: sql<string>`${loginThrottle.windowStartedAt}::text`.as(loginThrottle.windowStartedAt.name),
    });
}

/** Throws TOO_MANY_REQUESTS when any counted key is over its `max`. */
export function refuseIfOver(rows: CounterRow[], maxOf: (key: string) => number, windowSeconds: number, now: Date, what?: string): void {
  for (const row of rows) {
    if (Number(row.failures) > maxOf(row.key)) {
      const windowEnd = new Date(`${String(row.window_started_at).replace(" ", "T")}Z`).getTime() + windowSeconds * 1000;
      throw tooManyRequests(Math.max(1, Math.ceil((windowEnd - now.getTime()) / 1000)), what);
    }
  }
}

/** The sign-in throttle's keys for an attempt, and the bar of each. */
export const loginAttemptKeys = (email: string, address: string) => [emailKey(email), addressKey(address)];
export const loginMaxOf = (key: string) => (key.startsWith("email:") ? MAX_ATTEMPTS_PER_EMAIL : MAX_ATTEMPTS_PER_ADDRESS);

/** Throws TOO_MANY_REQUESTS when a counter read before an attempt already holds its `max` failures. */
export function refuseIfAtLimit(rows: CounterRow[], maxOf: (key: string) => number, windowSeconds: number, now: Date): void {
  // `refuseIfOver` judges a count that includes this attempt: at the bar now is over it then.
  refuseIfOver(rows, (key) => maxOf(key) - 1, windowSeconds, now);
}

/** Counts a password check (sign-in, password change) and refuses when over the limit. */
export async function reserveLoginAttempt(db: Database, email: string, address: string, now: Date): Promise<void> {
  const rows = await countAttempts(db, loginAttemptKeys(email, address), throttleWindow(THROTTLE_WINDOW_SECONDS, now));
  refuseIfOver(rows, loginMaxOf, THROTTLE_WINDOW_SECONDS, now);
}

/**
 * After a right current password in `changePassword` (which reserves its attempt before the
 * hash, `reserveLoginAttempt`): the email's counter goes back to 0 (the failures before it are
 * forgiven), the address gets this attempt back. As CTEs (`cleared`, `eased`), which
 * `forgiveAttempt` runs. The sign-in counts only failures, after the hash, and forgives inside
 * its deciding function (migration 0009), so it needs neither.
 *
 * An UPDATE, not a DELETE: the row is re-used by the next sign-in's count (a HOT update instead
 * of a delete, an insert and an index entry each time; the backup's deletion log records
 * nothing), and the prune job drops it when its window has passed. A failure after it counts
 * from 1 in what is left of that window.
 *
 * The email's row is locked before the address's, as in `countAttempts` (its VALUES order):
 * Postgres runs data-modifying CTEs in no set order, and a sign-in forgiving (address, then
 * email) while another counts (email, then address) deadlocks. `eased` reads `cleared`, so the
 * email's update runs first.
 */
export function forgiveAttemptCtes(db: Database, email: string, address: string): SQL {
  const cleared = db
    .update(loginThrottle)
    .set({ failures: 0 })
    .where(eq(loginThrottle.key, emailKey(email)))
    .returning({ key: loginThrottle.key });
  const eased = db
    .update(loginThrottle)
    .set({ failures: sql`greatest(${loginThrottle.failures} - 1, 0)` })
    .where(and(eq(loginThrottle.key, addressKey(address)), sql`(select count(*) from cleared) >= 0`));
  return sql`cleared as (${cleared.getSQL()}), eased as (${eased.getSQL()})`;
}

export async function forgiveAttempt(db: Database, email: string, address: string): Promise<void> {
  await db.execute(sql`with ${forgiveAttemptCtes(db, email, address)} select 1`);
}

/** Drops counters whose window has passed; run by the prune-sessions job. */
export async function pruneExpiredThrottles(db: Database, now: Date, batchSize: number): Promise<number> {
  const { deleted } = await deleteInBatches(db, loginThrottle, loginThrottle.key, lt(loginThrottle.expiresAt, toDbTime(now)), batchSize);
  return deleted;
}

/**
 * A fixed-window quota in the same table as the login throttle (keys with their own prefix):
 * counts one use of every key and refuses when any is over its `max`. Used for password-reset
 * requests and registrations, which count every request, not failures.
 */
export async function reserveQuota(
  db: Database,
  keys: { key: string; max: number }[],
  windowSeconds: number,
  now: Date,
  what: string,
): Promise<void> {
  const rows = await countAttempts(
    db,
    keys.map((k) => k.key),
    throttleWindow(windowSeconds, now),
  );
  refuseIfOver(rows, (key) => keys.find((k) => k.key === key)?.max ?? Infinity, windowSeconds, now, what);
}

/** Ends the login throttle for one email (after a successful password reset). */
export async function clearEmailThrottle(db: Database, email: string): Promise<void> {
  await db.delete(loginThrottle).where(eq(loginThrottle.key, emailKey(email)));
}
