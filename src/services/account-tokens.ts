import { and, eq, gt, isNull, lte } from "drizzle-orm";
import type { Database } from "../db/client";
import { type AccountTokenPurpose, accountTokens } from "../db/schema";
import { toDbTime } from "../lib/time";
import { hashToken } from "../lib/tokens";

/**
 * Spends a token: one guarded UPDATE, so of two racing uses exactly one gets the user id.
 * Unknown, used, expired and other-purpose tokens alike give null.
 */
export async function consumeAccountToken(db: Database, purpose: AccountTokenPurpose, token: string, now: Date): Promise<string | null> {
  const nowText = toDbTime(now);
  const [row] = await db
    .update(accountTokens)
    .set({ usedAt: nowText })
    .where(
      and(
        eq(accountTokens.tokenHash, await hashToken(token)),
        eq(accountTokens.purpose, purpose),
        isNull(accountTokens.usedAt),
        gt(accountTokens.expiresAt, nowText),
      ),
    )
    .returning({ userId: accountTokens.userId });
  return row?.userId ?? null;
}

/** Every still-open token of this purpose for this account stops working (after a reset). */
export async function spendAllAccountTokens(db: Database, userId: string, purpose: AccountTokenPurpose, now: Date): Promise<void> {
  await db
    .update(accountTokens)
    .set({ usedAt: toDbTime(now) })
    .where(and(eq(accountTokens.userId, userId), eq(accountTokens.purpose, purpose), isNull(accountTokens.usedAt)));
}

/** Tokens expired for a day are of no use, even as a record (prune-sessions job). */
export async function pruneExpiredAccountTokens(db: Database, now: Date): Promise<number> {
  const rows = await db
    .delete(accountTokens)
    .where(lte(accountTokens.expiresAt, toDbTime(new Date(now.getTime() - 86_400_000))))
    .returning({ id: accountTokens.id });
  return rows.length;
}
