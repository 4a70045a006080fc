import { and, desc, eq, lt, type SQL, sql } from "drizzle-orm";
import * as v from "valibot";
import type { AuditEvent } from "../contract/types";
import type { Database } from "../db/client";
import { auditEvents } from "../db/schema";
import { calendarTimestampText, decodeCursor, encodeCursor, uuidText } from "../lib/cursor";
import type { Page } from "../lib/page";
import { toDbTime, toIso } from "../lib/time";
import { uuidv7 } from "../lib/uuidv7";

export type { AuditEvent } from "../contract/types";

export const auditActions = [
  "auth.register",
  "auth.login",
  "auth.login_failed",
  "auth.logout",
  "auth.logout_all",
  "auth.password_changed",
  "auth.password_reset_requested",
  "auth.password_reset",
  "auth.email_verified",
  "auth.session_revoked",
  "users.role_changed",
  "users.sessions_revoked",
  "users.disabled",
  "users.enabled",
  "products.created",
  "products.updated",
  "products.deleted",
  "inventory.adjusted",
  "inventory.set",
  "orders.cancelled",
  "orders.status_changed",
] as const;
export type AuditAction = (typeof auditActions)[number];
export type AuditTargetType = "user" | "product" | "order";

/** Who acted and from where: carried from the request into every service that writes an event. */
export interface AuditContext {
  actorId: string | null;
  ip: string | null;
  requestId: string | null;
  now: Date;
}

/** For calls made outside a request (the CLI, seed, direct service calls in scripts). */
export const systemAudit = (now = new Date()): AuditContext => ({ actorId: null, ip: null, requestId: null, now });

// What `details` may carry: values of these keys only, so a secret cannot slip in by accident.
type Detail = string | number | boolean | null;
export type AuditDetails = Partial<
  Record<
    | "email"
    | "oldPrice"
    | "newPrice"
    | "oldStock"
    | "newStock"
    | "delta"
    | "oldStatus"
    | "newStatus"
    | "oldRole"
    | "newRole"
    | "name"
    | "revoked"
    | "reason",
    Detail
  >
>;

export interface AuditEntry {
  action: AuditAction;
  targetType?: AuditTargetType;
  /** A target id, or an SQL expression for it (an unknown email's login leaves it null). */
  targetId?: string | null | SQL;
  details?: AuditDetails;
}

/**
 * One event's INSERT as a query builder, for a statement that writes the change and its event
 * together (the sign-in sends it inside its session insert, through `.getSQL()`).
 */
export function auditInsert(db: Database, ctx: AuditContext, entry: AuditEntry) {
  return db.insert(auditEvents).values(auditRow(ctx, entry));
}

/**
 * One event as a row to insert. The id is time-ordered (src/lib/uuidv7.ts): every sign-in writes
 * an event, and a random key would put each on a random leaf of the primary key (and, first
 * after a checkpoint, a full-page image of it in the WAL).
 */
export function auditRow(ctx: AuditContext, entry: AuditEntry) {
  return {
    id: uuidv7(),
    at: toDbTime(ctx.now),
    action: entry.action,
    actorId: ctx.actorId,
    targetType: entry.targetType ?? null,
    targetId: entry.targetId ?? null,
    ip: ctx.ip,
    requestId: ctx.requestId,
    details: entry.details ?? {},
  } satisfies { [K in keyof typeof auditEvents.$inferInsert]?: (typeof auditEvents.$inferInsert)[K] | SQL };
}

/** Writes one event; call it with the transaction of the change it records. */
export async function recordAudit(db: Database, ctx: AuditContext, entry: AuditEntry): Promise<void> {
  await auditInsert(db, ctx, entry);
}

const auditCursorSchema = v.strictTuple([v.literal("audit"), calendarTimestampText, uuidText]);

export interface ListAuditInput {
  actorId?: string;
  targetId?: string;
  action?: string;
  limit: number;
  cursor?: string | null;
}

/** Newest first, keyset paged by (at, id). */
export async function listAuditEvents(db: Database, input: ListAuditInput): Promise<Page<AuditEvent>> {
  const conditions: SQL[] = [];
  if (input.actorId) conditions.push(eq(auditEvents.actorId, input.actorId));
  if (input.targetId) conditions.push(eq(auditEvents.targetId, input.targetId));
  if (input.action) conditions.push(eq(auditEvents.action, input.action));
  if (input.cursor) {
    const [, at, id] = decodeCursor(input.cursor, auditCursorSchema);
    conditions.push(sql`(${auditEvents.at}, ${auditEvents.id}) < (${at}::timestamp, ${id}::uuid)`);
  }
  const rows = await db
    .select()
    .from(auditEvents)
    .where(and(...conditions))
    .orderBy(desc(auditEvents.at), desc(auditEvents.id))
    .limit(input.limit + 1);
  const more = rows.length > input.limit;
  const items = more ? rows.slice(0, input.limit) : rows;
  const last = items[items.length - 1];
  return {
    items: items.map((r) => ({
      id: r.id,
      at: toIso(r.at),
      action: r.action,
      actorId: r.actorId,
      targetType: r.targetType,
      targetId: r.targetId,
      ip: r.ip,
      requestId: r.requestId,
      details: (typeof r.details === "string" ? JSON.parse(r.details) : r.details) as Record<string, unknown>,
    })),
    nextCursor: more && last ? encodeCursor(["audit", last.at, last.id]) : null,
  };
}

/** Deletes events older than `retentionDays`, in bounded batches (prune-sessions job). */
export async function pruneAuditEvents(db: Database, now: Date, retentionDays: number, batchSize: number): Promise<number> {
  const cutoff = toDbTime(new Date(now.getTime() - retentionDays * 86_400_000));
  let total = 0;
  for (;;) {
    const batch = db.select({ id: auditEvents.id }).from(auditEvents).where(lt(auditEvents.at, cutoff)).limit(batchSize);
    const rows = await db.delete(auditEvents).where(sql`${auditEvents.id} in (${batch})`).returning({ id: auditEvents.id });
    total += rows.length;
    if (rows.length < batchSize) return total;
  }
}
