import { and, desc, eq, getTableColumns, gt, ne, sql, type SQL } from "drizzle-orm";
import { queryRows, type Database } from "../db/client";
import { preparedQuery } from "../db/prepared";
import { sessions, users, type UserRole } from "../db/schema";
import { utcNow } from "../db/schema/columns";
import { conflict, forbidden, notFound, unauthorized } from "../errors";
import { toDbTime, toIso } from "../lib/time";
import { hashPassword, needsRehash, verifyPassword } from "../lib/passwords";
import { digestsEqual, hashToken, signAccessToken, verifyAccessToken, type TokenConfig } from "../lib/tokens";
import {
  emailKey,
  forgiveAttempt,
  forgiveAttemptCtes,
  refuseIfThrottled,
  reserveAttemptCte,
  reserveLoginAttempt,
  type CounterRow,
} from "./login-throttle";

export interface User {
  id: string;
  email: string;
  role: UserRole;
  createdAt: string;
  updatedAt: string;
}
export interface Auth {
  user: User;
  accessToken: string;
  expiresAt: string;
}
export interface SessionInfo {
  id: string;
  createdAt: string;
  expiresAt: string;
  current: boolean;
}
/** Who is calling, once the token and its session row have both been checked. */
export interface AuthenticatedUser {
  id: string;
  email: string;
  role: UserRole;
  sessionId: string;
}
export interface AuthDeps {
  tokens: TokenConfig;
  now: Date;
}

const WRONG_CREDENTIALS = "Email or password is incorrect";


function toUser(row: UserRow): User {
  return { id: row.id, email: row.email, role: row.role, createdAt: toIso(row.createdAt), updatedAt: toIso(row.updatedAt) };
}

// Unknown emails are verified against this so they cost what a wrong password costs.
let dummyHash: Promise<string> | undefined;
const getDummyHash = () => (dummyHash ??= hashPassword("not-a-real-password-only-for-timing"));

/**
 * Creates a session row and the token that names it; the row keeps only the token's hash.
 * `along` are CTEs sent in the same statement (the login's forgiven attempt).
 */
async function issueSession(db: Database, deps: AuthDeps, user: UserRow, along?: SQL): Promise<Auth> {
  const sessionId = crypto.randomUUID();
  const expiresAt = new Date(deps.now.getTime() + deps.tokens.ttlSeconds * 1000);
  const accessToken = await signAccessToken(deps.tokens, { userId: user.id, sessionId, issuedAt: deps.now, expiresAt });
  const row = { id: sessionId, userId: user.id, tokenHash: await hashToken(accessToken), expiresAt: toDbTime(expiresAt), createdAt: toDbTime(deps.now) };
  if (along) {
    await db.execute(sessionInsertStatement(row, along));
  } else {
    await db.insert(sessions).values(row);
  }
  return { user: toUser(user), accessToken, expiresAt: expiresAt.toISOString() };
}

export async function register(db: Database, deps: AuthDeps, input: { email: string; password: string }): Promise<Auth> {
  const passwordHash = await hashPassword(input.password);
  return db.transaction(async (tx) => {
    // ON CONFLICT instead of a prior SELECT: two racing registrations get one account and one CONFLICT.
    const [user] = await tx
      .insert(users)
      .values({ email: input.email, passwordHash })
      .onConflictDoNothing({ target: users.email })
      .returning();
    if (!user) throw conflict("An account with this email already exists");
    return issueSession(tx, deps, user);
  });
}

/** The users columns under their schema keys, timestamps as the database's text (as Drizzle reads them). */
const userColumns = sql.join(
  Object.entries(getTableColumns(users)).map(([key, column]) =>
    column.columnType === "PgTimestampString" ? sql`${column}::text as ${sql.identifier(key)}` : sql`${column} as ${sql.identifier(key)}`,
  ),
  sql`, `,
);

type UserRow = typeof users.$inferSelect;

/** Counts the attempt and reads the account (bench/baseline.ts renders it too). */
export function loginLookupStatement(email: string, address: string, now: Date): SQL {
  return sql`with counted as (${reserveAttemptCte(email, address, now)})
        select counted.*, account.*
          from counted left join (select ${userColumns} from ${users} where ${users.email} = ${email} limit 1) account
            on counted.key = ${emailKey(email)}`;
}

/** The session row, with CTEs sent in the same statement (bench/baseline.ts renders it too). */
export function sessionInsertStatement(row: typeof sessions.$inferInsert, along: SQL): SQL {
  const s = sessions;
  return sql`with ${along} insert into ${s} (${sql.identifier(s.id.name)}, ${sql.identifier(s.userId.name)}, ${sql.identifier(s.tokenHash.name)}, ${sql.identifier(s.expiresAt.name)}, ${sql.identifier(s.createdAt.name)})
          values (${row.id}, ${row.userId}, ${row.tokenHash}, ${row.expiresAt}, ${row.createdAt})`;
}

/**
 * Two statements around the hash: (1) count the attempt (the throttle, shared by every
 * instance) and read the account, (2) forgive the attempt and insert the session. An unknown
 * email costs what a wrong password costs: the same statement, a verify against a dummy hash,
 * the same answer.
 */
export async function login(
  db: Database,
  deps: AuthDeps & { clientAddress: string },
  input: { email: string; password: string },
): Promise<Auth> {
  const key = emailKey(input.email);
  const rows = await queryRows<CounterRow & { [K in keyof UserRow]: UserRow[K] | null }>(
    db,
    loginLookupStatement(input.email, deps.clientAddress, deps.now),
  );
  refuseIfThrottled(rows, deps.now);
  const found = rows.find((r) => r.key === key);
  const user = found?.id ? (found as CounterRow & UserRow) : undefined;
  const ok = await verifyPassword(user?.passwordHash ?? (await getDummyHash()), input.password);
  if (!user || !ok) throw unauthorized(WRONG_CREDENTIALS);
  if (needsRehash(user.passwordHash)) {
    await forgiveAttempt(db, input.email, deps.clientAddress);
    const [updated] = await db
      .update(users)
      .set({ passwordHash: await hashPassword(input.password), updatedAt: utcNow })
      .where(eq(users.id, user.id))
      .returning();
    return issueSession(db, deps, updated ?? user);
  }
  return issueSession(db, deps, user, forgiveAttemptCtes(input.email, deps.clientAddress));
}

/**
 * Verifies the token, then requires its session row: present, unexpired, owned by `sub`, and
 * holding this token's hash. So a revoked session fails at once, whatever the JWT's `exp` says.
 */
export async function authenticate(db: Database, deps: AuthDeps, token: string): Promise<AuthenticatedUser> {
  const claims = await verifyAccessToken(deps.tokens, token, deps.now);
  // Every signed-in request runs this lookup, so it is a prepared query.
  const [row] = await preparedQuery(db, "auth.session", () =>
    db
      .select({ id: users.id, email: users.email, role: users.role, tokenHash: sessions.tokenHash })
      .from(sessions)
      .innerJoin(users, eq(users.id, sessions.userId))
      .where(
        and(
          eq(sessions.id, sql.placeholder("sessionId")),
          eq(sessions.userId, sql.placeholder("userId")),
          gt(sessions.expiresAt, sql.placeholder("now")),
        ),
      )
      .limit(1),
  ).execute({ sessionId: claims.sessionId, userId: claims.userId, now: toDbTime(deps.now) });
  if (!row || !digestsEqual(row.tokenHash, await hashToken(token))) {
    throw unauthorized("The session has ended: sign in again");
  }
  return { id: row.id, email: row.email, role: row.role, sessionId: claims.sessionId };
}

export async function getUser(db: Database, userId: string): Promise<User> {
  const [row] = await preparedQuery(db, "auth.user", () =>
    db.select().from(users).where(eq(users.id, sql.placeholder("userId"))).limit(1),
  ).execute({ userId });
  if (!row) throw unauthorized();
  return toUser(row);
}

/** Rotation: a new session and token; the old session is revoked in the same transaction. */
export async function refreshSession(db: Database, deps: AuthDeps, current: AuthenticatedUser): Promise<Auth> {
  return db.transaction(async (tx) => {
    const revoked = await tx
      .delete(sessions)
      .where(and(eq(sessions.id, current.sessionId), eq(sessions.userId, current.id)))
      .returning({ id: sessions.id });
    // A concurrent refresh or logout got there first: this token is already spent.
    if (revoked.length === 0) throw unauthorized("The session has ended: sign in again");
    const [user] = await tx.select().from(users).where(eq(users.id, current.id)).limit(1);
    if (!user) throw unauthorized();
    return issueSession(tx, deps, user);
  });
}

export async function logout(db: Database, current: AuthenticatedUser): Promise<{ ok: true }> {
  await db.delete(sessions).where(and(eq(sessions.id, current.sessionId), eq(sessions.userId, current.id)));
  return { ok: true };
}

export async function logoutAll(db: Database, userId: string): Promise<{ ok: true; revoked: number }> {
  const rows = await db.delete(sessions).where(eq(sessions.userId, userId)).returning({ id: sessions.id });
  return { ok: true, revoked: rows.length };
}

export async function listSessions(db: Database, deps: { now: Date }, current: AuthenticatedUser): Promise<SessionInfo[]> {
  const rows = await db
    .select({ id: sessions.id, createdAt: sessions.createdAt, expiresAt: sessions.expiresAt })
    .from(sessions)
    .where(and(eq(sessions.userId, current.id), gt(sessions.expiresAt, toDbTime(deps.now))))
    .orderBy(desc(sessions.createdAt), desc(sessions.id));
  return rows.map((r) => ({
    id: r.id,
    createdAt: toIso(r.createdAt),
    expiresAt: toIso(r.expiresAt),
    current: r.id === current.sessionId,
  }));
}

export async function revokeSession(db: Database, userId: string, sessionId: string): Promise<{ ok: true }> {
  const rows = await db
    .delete(sessions)
    .where(and(eq(sessions.id, sessionId), eq(sessions.userId, userId)))
    .returning({ id: sessions.id });
  // Another user's session is reported exactly like a missing one.
  if (rows.length === 0) throw notFound("Session");
  return { ok: true };
}

/**
 * Checks the current password (wrong → FORBIDDEN, counted by the login throttle), stores the
 * new hash, and leaves only the session of the returned token alive.
 */
export async function changePassword(
  db: Database,
  deps: AuthDeps & { clientAddress: string },
  current: AuthenticatedUser,
  input: { currentPassword: string; newPassword: string },
): Promise<Auth> {
  await reserveLoginAttempt(db, current.email, deps.clientAddress, deps.now);
  const [user] = await db.select().from(users).where(eq(users.id, current.id)).limit(1);
  if (!user) throw unauthorized();
  if (!(await verifyPassword(user.passwordHash, input.currentPassword))) {
    throw forbidden("The current password is incorrect");
  }
  await forgiveAttempt(db, current.email, deps.clientAddress);
  const passwordHash = await hashPassword(input.newPassword);
  return db.transaction(async (tx) => {
    const [updated] = await tx
      .update(users)
      .set({ passwordHash, updatedAt: utcNow })
      .where(eq(users.id, current.id))
      .returning();
    if (!updated) throw unauthorized();
    const auth = await issueSession(tx, deps, updated);
    const newSessionId = (await verifyAccessToken(deps.tokens, auth.accessToken, deps.now)).sessionId;
    await tx.delete(sessions).where(and(eq(sessions.userId, current.id), ne(sessions.id, newSessionId)));
    return auth;
  });
}

/**
 * Start-up and seed: makes sure this admin exists with this password. Idempotent: a second run
 * changes nothing, and an existing account is promoted rather than duplicated.
 */
export async function ensureAdmin(db: Database, email: string, password: string): Promise<{ created: boolean }> {
  const [existing] = await db.select().from(users).where(eq(users.email, email)).limit(1);
  if (!existing) {
    const passwordHash = await hashPassword(password);
    const inserted = await db
      .insert(users)
      .values({ email, passwordHash, role: "admin" })
      .onConflictDoNothing({ target: users.email })
      .returning({ id: users.id });
    if (inserted.length > 0) return { created: true };
    return ensureAdmin(db, email, password);
  }
  const passwordMatches = await verifyPassword(existing.passwordHash, password);
  if (existing.role === "admin" && passwordMatches) return { created: false };
  const passwordHash = passwordMatches ? undefined : await hashPassword(password);
  await db.transaction(async (tx) => {
    await tx
      .update(users)
      .set({ role: "admin", ...(passwordHash ? { passwordHash } : {}), updatedAt: utcNow })
      .where(eq(users.id, existing.id));
    // A new ADMIN_PASSWORD is how an operator rotates a leaked one: sessions signed in with the
    // old password end, as with changePassword.
    if (passwordHash) await tx.delete(sessions).where(eq(sessions.userId, existing.id));
  });
  return { created: false };
}


