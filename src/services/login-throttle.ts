import { eq, lt, type SQL, sql } from "drizzle-orm";
import { deleteInBatches } from "../db/batched-delete";
import type { Database } from "../db/client";
import { queryRows } from "../db/client";
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

const t = loginThrottle;
const col = (c: { name: string }) => sql.identifier(c.name);

/** A counter as the upsert returns it (raw rows carry the columns' own names). */
export type CounterRow = {
  key: string;
  failures: number;
  window_started_at: string;
};

/**
 * Counts this attempt before the password is checked, in one atomic upsert of the email's and
 * the address's counters, so concurrent guesses (a batch of 50 logins) cannot slip past the
 * limit between a read and a write. A success then takes the attempt back (`forgiveAttempt`).
 * The window is fixed from the first failure. A data-modifying CTE, so the sign-in can read the
 * account in the same statement (`login` in ./auth.ts).
 */
export function reserveAttemptCte(email: string, address: string, now: Date): SQL {
  const nowText = toDbTime(now);
  const floor = toDbTime(new Date(now.getTime() - THROTTLE_WINDOW_SECONDS * 1000));
  const expires = toDbTime(new Date(now.getTime() + THROTTLE_WINDOW_SECONDS * 1000));
  const expired = sql`${t.windowStartedAt} <= ${floor}::timestamp`;
  return sql`insert into ${t} (${col(t.key)}, ${col(t.failures)}, ${col(t.windowStartedAt)}, ${col(t.expiresAt)})
        values (${emailKey(email)}, 1, ${nowText}, ${expires}), (${addressKey(address)}, 1, ${nowText}, ${expires})
        on conflict (${col(t.key)}) do update set
          ${col(t.failures)} = case when ${expired} then 1 else ${t.failures} + 1 end,
          ${col(t.windowStartedAt)} = case when ${expired} then excluded.${col(t.windowStartedAt)} else ${t.windowStartedAt} end,
          ${col(t.expiresAt)} = case when ${expired} then excluded.${col(t.expiresAt)} else ${t.expiresAt} end
        returning ${t.key} as key, ${t.failures} as failures, ${t.windowStartedAt}::text as window_started_at`;
}

/** Throws TOO_MANY_REQUESTS when the email or the address is over its limit. */
export function refuseIfThrottled(rows: CounterRow[], now: Date): void {
  for (const row of rows) {
    const max = row.key.startsWith("email:") ? MAX_ATTEMPTS_PER_EMAIL : MAX_ATTEMPTS_PER_ADDRESS;
    if (Number(row.failures) > max) {
      const windowEnd = new Date(`${String(row.window_started_at).replace(" ", "T")}Z`).getTime() + THROTTLE_WINDOW_SECONDS * 1000;
      throw tooManyRequests(Math.max(1, Math.ceil((windowEnd - now.getTime()) / 1000)));
    }
  }
}

export async function reserveLoginAttempt(db: Database, email: string, address: string, now: Date): Promise<void> {
  refuseIfThrottled(await queryRows<CounterRow>(db, reserveAttemptCte(email, address, now)), now);
}

/**
 * After a successful sign-in: the email's counter resets, the address gets its attempt back.
 * As CTEs, so the sign-in sends them with its session insert (one statement).
 */
export function forgiveAttemptCtes(email: string, address: string): SQL {
  return sql`cleared as (delete from ${t} where ${t.key} = ${emailKey(email)}),
    eased as (update ${t} set ${col(t.failures)} = greatest(${t.failures} - 1, 0) where ${t.key} = ${addressKey(address)})`;
}

export async function forgiveAttempt(db: Database, email: string, address: string): Promise<void> {
  await db.execute(sql`with ${forgiveAttemptCtes(email, address)} select 1`);
}

/** Drops counters whose window has passed; run by the prune-sessions job. */
export async function pruneExpiredThrottles(db: Database, now: Date, batchSize: number): Promise<number> {
  const { deleted } = await deleteInBatches(db, loginThrottle, loginThrottle.key, lt(loginThrottle.expiresAt, toDbTime(now)), batchSize);
  return deleted;
}

/**
 * A fixed-window quota in the same table as the login throttle (keys with their own prefix):
 * counts one use of every key in one atomic upsert and refuses when any is over its `max`.
 * Used for password-reset requests and registrations, which count every request, not failures.
 */
export async function reserveQuota(
  db: Database,
  keys: { key: string; max: number }[],
  windowSeconds: number,
  now: Date,
  what: string,
): Promise<void> {
  const nowText = toDbTime(now);
  const windowStartFloor = toDbTime(new Date(now.getTime() - windowSeconds * 1000));
  const expires = toDbTime(new Date(now.getTime() + windowSeconds * 1000));
  const windowOver = sql`${loginThrottle.windowStartedAt} <= ${windowStartFloor}`;
  const excluded = (column: { name: string }) => sql`excluded.${sql.identifier(column.name)}`;
  const rows = await db
    .insert(loginThrottle)
    .values(keys.map((k) => ({ key: k.key, failures: 1, windowStartedAt: nowText, expiresAt: expires })))
    .onConflictDoUpdate({
      target: loginThrottle.key,
      set: {
        failures: sql`case when ${windowOver} then 1 else ${loginThrottle.failures} + 1 end`,
        windowStartedAt: sql`case when ${windowOver} then ${excluded(loginThrottle.windowStartedAt)} else ${loginThrottle.windowStartedAt} end`,
        expiresAt: sql`case when ${windowOver} then ${excluded(loginThrottle.expiresAt)} else ${loginThrottle.expiresAt} end`,
      },
    })
    .returning({ key: loginThrottle.key, failures: loginThrottle.failures, window_started_at: loginThrottle.windowStartedAt });
  for (const row of rows) {
    const max = keys.find((k) => k.key === row.key)?.max ?? Infinity;
    if (Number(row.failures) > max) {
      const windowEnd = new Date(`${String(row.window_started_at).replace(" ", "T")}Z`).getTime() + windowSeconds * 1000;
      throw tooManyRequests(Math.max(1, Math.ceil((windowEnd - now.getTime()) / 1000)), what);
    }
  }
}

/** Ends the login throttle for one email (after a successful password reset). */
export async function clearEmailThrottle(db: Database, email: string): Promise<void> {
  await db.delete(loginThrottle).where(eq(loginThrottle.key, emailKey(email)));
}
