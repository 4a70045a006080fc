import { sql } from "drizzle-orm";
import type { Database } from "../db/client";
import { queryRows } from "../db/client";
import { tooManyRequests } from "../errors";
import { toDbTime } from "../lib/time";

export const THROTTLE_WINDOW_SECONDS = 15 * 60;
/** Attempts per email in one window before every further attempt is refused. */
export const MAX_ATTEMPTS_PER_EMAIL = 10;
/** Per client address the bar is higher: many people can share one address. */
export const MAX_ATTEMPTS_PER_ADDRESS = 100;

export const emailKey = (email: string) => `email:${email}`;
export const addressKey = (address: string) => `ip:${address}`;


/**
 * Counts this attempt before the password is checked, in one atomic upsert, so concurrent
 * guesses (a batch of 50 logins) cannot slip past the limit between a read and a write.
 * A success then takes the attempt back (`forgiveAttempt`). Throws TOO_MANY_REQUESTS when
 * the email or the address is over its limit; the window is fixed from the first failure.
 */
export async function reserveLoginAttempt(db: Database, email: string, address: string, now: Date): Promise<void> {
  const nowText = toDbTime(now);
  const windowStartFloor = toDbTime(new Date(now.getTime() - THROTTLE_WINDOW_SECONDS * 1000));
  const expires = toDbTime(new Date(now.getTime() + THROTTLE_WINDOW_SECONDS * 1000));
  const rows = await queryRows<{ key: string; failures: number; window_started_at: string }>(
    db,
    sql`insert into login_throttle as t (key, failures, window_started_at, expires_at)
        values (${emailKey(email)}, 1, ${nowText}, ${expires}), (${addressKey(address)}, 1, ${nowText}, ${expires})
        on conflict (key) do update set
          failures = case when t.window_started_at <= ${windowStartFloor} then 1 else t.failures + 1 end,
          window_started_at = case when t.window_started_at <= ${windowStartFloor} then excluded.window_started_at else t.window_started_at end,
          expires_at = case when t.window_started_at <= ${windowStartFloor} then excluded.expires_at else t.expires_at end
        returning key, failures, window_started_at`,
  );
  for (const row of rows) {
    const max = row.key.startsWith("email:") ? MAX_ATTEMPTS_PER_EMAIL : MAX_ATTEMPTS_PER_ADDRESS;
    if (Number(row.failures) > max) {
      const windowEnd = new Date(`${String(row.window_started_at).replace(" ", "T")}Z`).getTime() + THROTTLE_WINDOW_SECONDS * 1000;
      throw tooManyRequests(Math.max(1, Math.ceil((windowEnd - now.getTime()) / 1000)));
    }
  }
}

/** After a successful sign-in: the email's counter resets, the address gets its attempt back. */
export async function forgiveAttempt(db: Database, email: string, address: string): Promise<void> {
  await db.execute(sql`with cleared as (delete from login_throttle where key = ${emailKey(email)})
    update login_throttle set failures = greatest(failures - 1, 0) where key = ${addressKey(address)}`);
}

/** Drops counters whose window has passed; run by the prune-sessions job. */
export async function pruneExpiredThrottles(db: Database, now: Date, batchSize: number): Promise<number> {
  let total = 0;
  for (;;) {
    const rows = await queryRows<{ key: string }>(
      db,
      sql`delete from login_throttle where key in (
            select key from login_throttle where expires_at < ${toDbTime(now)} limit ${batchSize})
          returning key`,
    );
    total += rows.length;
    if (rows.length < batchSize) return total;
  }
}

