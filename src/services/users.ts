import { and, desc, eq, ilike, type SQL, sql } from "drizzle-orm";
import * as v from "valibot";
import type { Database } from "../db/client";
import { accountStatus, sessions, type UserRole, users } from "../db/schema";
import { utcNow } from "../db/schema/columns";
import { conflict, notFound } from "../errors";
import { calendarTimestampText, decodeCursor, encodeCursor, uuidText } from "../lib/cursor";
import type { Page } from "../lib/page";
import { type AuditContext, recordAudit } from "./audit";
import { selectUsers, toUser, type User, type UserRow } from "./auth";
import { escapeLikePattern } from "./products";

const userCursorSchema = v.strictTuple([v.literal("users"), calendarTimestampText, uuidText]);

export interface ListUsersInput {
  search?: string;
  role?: UserRole;
  limit: number;
  cursor?: string | null;
}

/** Newest first, keyset paged by (created_at, id); `search` is a literal substring of the email. */
export async function listUsers(db: Database, input: ListUsersInput): Promise<Page<User>> {
  const conditions: SQL[] = [];
  if (input.search) conditions.push(ilike(users.email, `%${escapeLikePattern(input.search)}%`));
  if (input.role) conditions.push(eq(users.role, input.role));
  if (input.cursor) {
    const [, createdAt, id] = decodeCursor(input.cursor, userCursorSchema);
    conditions.push(sql`(${users.createdAt}, ${users.id}) < (${createdAt}::timestamp, ${id}::uuid)`);
  }
  const rows = (await selectUsers(db)
    .where(and(...conditions))
    .orderBy(desc(users.createdAt), desc(users.id))
    .limit(input.limit + 1)) as UserRow[];
  const more = rows.length > input.limit;
  const items = more ? rows.slice(0, input.limit) : rows;
  const last = items[items.length - 1];
  return { items: items.map(toUser), nextCursor: more && last ? encodeCursor(["users", last.createdAt, last.id]) : null };
}

async function findUser(db: Database, id: string): Promise<UserRow> {
  const [row] = await selectUsers(db).where(eq(users.id, id)).limit(1);
  if (!row) throw notFound("User");
  return row as UserRow;
}

export const getUserById = async (db: Database, id: string): Promise<User> => toUser(await findUser(db, id));

/**
 * Every admin row is locked before a role change or a disable reads its target, so two admins
 * demoting or disabling each other at once serialise: the second reads the first's committed
 * change and gets CONFLICT from keepOneAdmin.
 */
async function lockAdmins(tx: Database): Promise<void> {
  await tx.select({ id: users.id }).from(users).where(eq(users.role, "admin")).for("update");
}

/** Call after lockAdmins, in the same transaction. */
async function keepOneAdmin(tx: Database, target: UserRow): Promise<void> {
  const [row] = await tx
    .select({ n: sql<number>`count(*)::int` })
    .from(users)
    .leftJoin(accountStatus, eq(accountStatus.userId, users.id))
    .where(and(eq(users.role, "admin"), sql`coalesce(${accountStatus.disabled}, false) = false`, sql`${users.id} <> ${target.id}::uuid`));
  if (Number(row?.n ?? 0) === 0) throw conflict("This is the last enabled admin: make another account admin first");
}

export async function setRole(db: Database, audit: AuditContext, input: { id: string; role: UserRole }): Promise<User> {
  return db.transaction(async (tx) => {
    await lockAdmins(tx);
    const target = await findUser(tx, input.id);
    if (target.role === input.role) return toUser(target);
    if (target.role === "admin" && !target.disabled) await keepOneAdmin(tx, target);
    await tx.update(users).set({ role: input.role, updatedAt: utcNow }).where(eq(users.id, input.id));
    await recordAudit(tx, audit, {
      action: "users.role_changed",
      targetType: "user",
      targetId: input.id,
      details: { oldRole: target.role, newRole: input.role },
    });
    return toUser(await findUser(tx, input.id));
  });
}

export async function revokeUserSessions(db: Database, audit: AuditContext, id: string): Promise<{ ok: true; revoked: number }> {
  return db.transaction(async (tx) => {
    await findUser(tx, id);
    const rows = await tx.delete(sessions).where(eq(sessions.userId, id)).returning({ id: sessions.id });
    await recordAudit(tx, audit, { action: "users.sessions_revoked", targetType: "user", targetId: id, details: { revoked: rows.length } });
    return { ok: true as const, revoked: rows.length };
  });
}

async function setDisabled(tx: Database, id: string, disabled: boolean): Promise<void> {
  await tx
    .insert(accountStatus)
    .values({ userId: id, disabled })
    .onConflictDoUpdate({ target: accountStatus.userId, set: { disabled, updatedAt: utcNow } });
  await tx.update(users).set({ updatedAt: utcNow }).where(eq(users.id, id));
}

export async function disableUser(db: Database, audit: AuditContext, id: string): Promise<User> {
  return db.transaction(async (tx) => {
    await lockAdmins(tx);
    const target = await findUser(tx, id);
    if (target.disabled) return toUser(target);
    if (target.role === "admin") await keepOneAdmin(tx, target);
    await setDisabled(tx, id, true);
    const revoked = await tx.delete(sessions).where(eq(sessions.userId, id)).returning({ id: sessions.id });
    await recordAudit(tx, audit, { action: "users.disabled", targetType: "user", targetId: id, details: { revoked: revoked.length } });
    return toUser(await findUser(tx, id));
  });
}

export async function enableUser(db: Database, audit: AuditContext, id: string): Promise<User> {
  return db.transaction(async (tx) => {
    const target = await findUser(tx, id);
    if (!target.disabled) return toUser(target);
    await setDisabled(tx, id, false);
    await recordAudit(tx, audit, { action: "users.enabled", targetType: "user", targetId: id });
    return toUser(await findUser(tx, id));
  });
}
