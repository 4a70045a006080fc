import { and, eq, inArray, lte, sql } from "drizzle-orm";
import type { Database } from "../db/client";
import { type AccountTokenPurpose, accountStatus, accountTokens, type MailKind, mailOutbox, users } from "../db/schema";
import { describeError, type Logger } from "../lib/logger";
import { toDbTime } from "../lib/time";
import { hashToken } from "../lib/tokens";
import type { MailMessage, MailTransport } from "../mail/transport";

export const RESET_TOKEN_TTL_SECONDS = 30 * 60;
export const VERIFY_TOKEN_TTL_SECONDS = 24 * 60 * 60;
/** Attempts before a message is given up; the waits between them double from BACKOFF_BASE_SECONDS. */
export const MAX_MAIL_ATTEMPTS = 6;
export const BACKOFF_BASE_SECONDS = 30;
/** A message claimed longer ago than this was being sent by a host that died: it is not resent. */
export const MAIL_LEASE_SECONDS = 10 * 60;
const BATCH = 20;

/** Queues a mail; call it inside the transaction of the change that causes it. */
export async function enqueueMail(db: Database, kind: MailKind, recipient: string, now: Date): Promise<void> {
  await db.insert(mailOutbox).values({ kind, recipient, nextAttemptAt: toDbTime(now), createdAt: toDbTime(now) });
}

export interface DeliveryDeps {
  db: Database;
  transport: MailTransport;
  logger: Logger;
  now: Date;
  appUrl: string;
  from: string;
  host: string;
}

export interface DeliveryReport {
  claimed: number;
  sent: number;
  skipped: number;
  retried: number;
  failed: number;
  abandoned: number;
}

/** A random token (256 bits) as URL-safe text. */
function newToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Buffer.from(bytes).toString("base64url");
}

type OutboxRow = typeof mailOutbox.$inferSelect;

/**
 * What a queued row becomes: the message and the token row behind its link, or null when
 * nothing is to be sent (no such account, a disabled one, or an email verified meanwhile).
 * The token is created here, so it exists in clear only in this message.
 */
async function render(deps: DeliveryDeps, row: OutboxRow): Promise<{ message: MailMessage; tokenId: string } | null> {
  const [user] = await deps.db
    .select({ id: users.id, disabled: accountStatus.disabled, emailVerified: accountStatus.emailVerified })
    .from(users)
    .leftJoin(accountStatus, eq(accountStatus.userId, users.id))
    .where(eq(users.email, row.recipient))
    .limit(1);
  if (!user || user.disabled) return null;
  if (row.kind === "email_verification" && user.emailVerified) return null;
  const purpose: AccountTokenPurpose = row.kind;
  const ttl = row.kind === "password_reset" ? RESET_TOKEN_TTL_SECONDS : VERIFY_TOKEN_TTL_SECONDS;
  const token = newToken();
  const [inserted] = await deps.db
    .insert(accountTokens)
    .values({
      userId: user.id,
      purpose,
      tokenHash: await hashToken(token),
      expiresAt: toDbTime(new Date(deps.now.getTime() + ttl * 1000)),
      createdAt: toDbTime(deps.now),
    })
    .returning({ id: accountTokens.id });
  const link = `${deps.appUrl}/${row.kind === "password_reset" ? "reset-password" : "verify-email"}?token=${token}`;
  const message: MailMessage =
    row.kind === "password_reset"
      ? {
          to: row.recipient,
          from: deps.from,
          subject: "Reset your password",
          text: `Someone asked to reset the password of this account.\n\nTo choose a new password, open this link within 30 minutes:\n${link}\n\nIf it was not you, ignore this mail: your password stays as it is.\n`,
        }
      : {
          to: row.recipient,
          from: deps.from,
          subject: "Confirm your email address",
          text: `Please confirm this email address by opening this link within 24 hours:\n${link}\n`,
        };
  return { message, tokenId: inserted!.id };
}

/**
 * Claims due messages (a guarded UPDATE over FOR UPDATE SKIP LOCKED: of any number of hosts
 * running this at once, each row goes to exactly one), sends them, and records each outcome.
 * At most once: a row is resent only after the transport reported that it was not delivered;
 * a row whose sender died mid-send is marked failed, never sent again.
 */
export async function deliverPendingMail(deps: DeliveryDeps): Promise<DeliveryReport> {
  const report: DeliveryReport = { claimed: 0, sent: 0, skipped: 0, retried: 0, failed: 0, abandoned: 0 };
  const nowText = toDbTime(deps.now);
  const staleBefore = toDbTime(new Date(deps.now.getTime() - MAIL_LEASE_SECONDS * 1000));
  const abandoned = await deps.db
    .update(mailOutbox)
    .set({ status: "failed", lastError: "interrupted while sending; not resent (at most once)" })
    .where(and(eq(mailOutbox.status, "sending"), lte(mailOutbox.claimedAt, staleBefore)))
    .returning({ id: mailOutbox.id });
  report.abandoned = abandoned.length;

  for (;;) {
    const due = deps.db
      .select({ id: mailOutbox.id })
      .from(mailOutbox)
      .where(and(eq(mailOutbox.status, "pending"), lte(mailOutbox.nextAttemptAt, nowText)))
      .orderBy(mailOutbox.nextAttemptAt)
      .limit(BATCH)
      .for("update", { skipLocked: true });
    const claimed = await deps.db
      .update(mailOutbox)
      .set({ status: "sending", attempts: sql`${mailOutbox.attempts} + 1`, claimedAt: nowText, claimedBy: deps.host })
      .where(and(sql`${mailOutbox.id} in (${due})`, eq(mailOutbox.status, "pending")))
      .returning();
    report.claimed += claimed.length;
    for (const row of claimed) await deliverOne(deps, row, report);
    if (claimed.length < BATCH) return report;
  }
}

async function deliverOne(deps: DeliveryDeps, row: OutboxRow, report: DeliveryReport): Promise<void> {
  const nowText = toDbTime(deps.now);
  let rendered: Awaited<ReturnType<typeof render>>;
  try {
    rendered = await render(deps, row);
  } catch (error) {
    return retryLater(deps, row, report, error);
  }
  if (!rendered) {
    await deps.db.update(mailOutbox).set({ status: "skipped", sentAt: null }).where(eq(mailOutbox.id, row.id));
    report.skipped++;
    return;
  }
  try {
    await deps.transport.send(rendered.message);
  } catch (error) {
    // Not delivered: the token behind this link must not stay usable.
    await deps.db.delete(accountTokens).where(eq(accountTokens.id, rendered.tokenId));
    return retryLater(deps, row, report, error);
  }
  await deps.db.update(mailOutbox).set({ status: "sent", sentAt: nowText, lastError: null }).where(eq(mailOutbox.id, row.id));
  report.sent++;
}

async function retryLater(deps: DeliveryDeps, row: OutboxRow, report: DeliveryReport, error: unknown): Promise<void> {
  // The message of a transport error can quote the server's reply; it never holds the token.
  const reason = String((error as Error)?.message ?? error).slice(0, 500);
  deps.logger.warn("mail not delivered", { id: row.id, kind: row.kind, attempt: row.attempts, ...describeError(error), stack: undefined });
  if (row.attempts >= MAX_MAIL_ATTEMPTS) {
    await deps.db.update(mailOutbox).set({ status: "failed", lastError: reason }).where(eq(mailOutbox.id, row.id));
    report.failed++;
    return;
  }
  const wait = BACKOFF_BASE_SECONDS * 2 ** (row.attempts - 1);
  await deps.db
    .update(mailOutbox)
    .set({ status: "pending", lastError: reason, nextAttemptAt: toDbTime(new Date(deps.now.getTime() + wait * 1000)) })
    .where(eq(mailOutbox.id, row.id));
  report.retried++;
}

/** Sent, skipped and failed rows older than `keepDays` (prune-sessions job). */
export async function pruneMailOutbox(db: Database, now: Date, keepDays = 30): Promise<number> {
  const cutoff = toDbTime(new Date(now.getTime() - keepDays * 86_400_000));
  const rows = await db
    .delete(mailOutbox)
    .where(and(inArray(mailOutbox.status, ["sent", "skipped", "failed"]), lte(mailOutbox.createdAt, cutoff)))
    .returning({ id: mailOutbox.id });
  return rows.length;
}
