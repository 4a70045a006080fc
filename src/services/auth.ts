import { and, desc, eq, gt, ne, sql } from "drizzle-orm";
import type { Auth, User } from "../contract/types";
import type { Database } from "../db/client";
import { AUTH_LOGIN_DECIDE, AUTH_LOGIN_READ, type LoginDecideParam, type LoginReadParam } from "../db/functions";
import { preparedQuery, rowPlaceholders, rowValues, sendLoginStatement, statementTemplate } from "../db/prepared";
import { accountStatus, auditEvents, sessionChains, sessions, type UserRole, users } from "../db/schema";
import { utcNow } from "../db/schema/columns";
import { badRequest, conflict, forbidden, notFound, unauthorized } from "../errors";
import { hashPassword, needsRehash, verifyPassword } from "../lib/passwords";
import { fromDbTime, toDbTime, toIso } from "../lib/time";
import { digestsEqual, hashToken, signAccessToken, type TokenConfig, verifyAccessToken } from "../lib/tokens";
import { uuidv7 } from "../lib/uuidv7";
import { consumeAccountToken, spendAllAccountTokens } from "./account-tokens";
import { type AuditContext, auditRow, recordAudit } from "./audit";
import {
  addressKey,
  type CounterRow,
  clearEmailThrottle,
  countAttempts,
  emailKey,
  forgiveAttempt,
  loginMaxOf,
  MAX_ATTEMPTS_PER_ADDRESS,
  MAX_ATTEMPTS_PER_EMAIL,
  refuseIfAtLimit,
  refuseIfOver,
  reserveLoginAttempt,
  reserveQuota,
  THROTTLE_WINDOW_SECONDS,
  throttleWindow,
} from "./login-throttle";
import { enqueueMail } from "./mail";

export type { Auth, User } from "../contract/types";

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
  /** SESSION_MAX_AGE_SECONDS: no refresh carries a chain past this from its login. */
  maxAgeSeconds?: number;
}

const WRONG_CREDENTIALS = "Email or password is incorrect";
const BAD_RESET_TOKEN = "token is invalid, already used or expired: request a new password-reset link";
const BAD_VERIFY_TOKEN = "token is invalid, already used or expired: request a new verification link";
const HOUR = 3600;
export const RESET_REQUESTS_PER_EMAIL = 5;
export const RESET_REQUESTS_PER_ADDRESS = 100;

// The flags live in account_status (no row: neither verified nor disabled).
const userColumns = {
  id: users.id,
  email: users.email,
  passwordHash: users.passwordHash,
  role: users.role,
  createdAt: users.createdAt,
  updatedAt: users.updatedAt,
  emailVerified: sql<boolean>`coalesce(${accountStatus.emailVerified}, false)`.as("email_verified"),
  disabled: sql<boolean>`coalesce(${accountStatus.disabled}, false)`.as("disabled"),
};
export type UserRow = {
  id: string;
  email: string;
  passwordHash: string;
  role: UserRole;
  createdAt: string;
  updatedAt: string;
  emailVerified: boolean;
  disabled: boolean;
};

/** Users with their account flags, for every query whose rows become a `User`. */
export function selectUsers(db: Database) {
  return db.select(userColumns).from(users).leftJoin(accountStatus, eq(accountStatus.userId, users.id));
}

/** A `selectUsers` row read raw (sent inside a larger statement): columns under their SQL names. */
function accountFromRaw(raw: Record<string, unknown>): UserRow {
  const text = (column: { name: string }) => String(raw[column.name]);
  return {
    id: text(users.id),
    email: text(users.email),
    passwordHash: text(users.passwordHash),
    role: text(users.role) as UserRole,
    createdAt: text(users.createdAt),
    updatedAt: text(users.updatedAt),
    emailVerified: raw.email_verified === true,
    disabled: raw.disabled === true,
  };
}

export function toUser(row: UserRow): User {
  return {
    id: row.id,
    email: row.email,
    role: row.role,
    emailVerified: row.emailVerified === true,
    disabled: row.disabled === true,
    createdAt: toIso(row.createdAt),
    updatedAt: toIso(row.updatedAt),
  };
}

async function userById(db: Database, id: string): Promise<UserRow | undefined> {
  const [row] = await selectUsers(db).where(eq(users.id, id)).limit(1);
  return row as UserRow | undefined;
}

// Unknown emails are verified against this so they cost what a wrong password costs.
let dummyHash: Promise<string> | undefined;
const getDummyHash = () => (dummyHash ??= hashPassword("not-a-real-password-only-for-timing"));

/**
 * A new session's row and the token that names it; the row keeps only the token's hash.
 * `chainStartedAt` is the login the chain began with (a refresh passes it on): the session
 * never outlives it by more than SESSION_MAX_AGE_SECONDS.
 */
async function newSession(deps: AuthDeps, user: UserRow, chainStartedAt: Date) {
  // Time-ordered (src/lib/uuidv7.ts), so new sessions share the right edge of the primary key.
  const sessionId = uuidv7();
  const byTtl = deps.now.getTime() + deps.tokens.ttlSeconds * 1000;
  const byChain = deps.maxAgeSeconds ? chainStartedAt.getTime() + deps.maxAgeSeconds * 1000 : Infinity;
  const expiresAt = new Date(Math.min(byTtl, byChain));
  const accessToken = await signAccessToken(deps.tokens, { userId: user.id, sessionId, issuedAt: deps.now, expiresAt });
  const row = {
    id: sessionId,
    userId: user.id,
    tokenHash: await hashToken(accessToken),
    expiresAt: toDbTime(expiresAt),
    createdAt: toDbTime(deps.now),
  } satisfies typeof sessions.$inferInsert;
  const auth: Auth = { user: toUser(user), accessToken, expiresAt: expiresAt.toISOString() };
  return { row, auth };
}

/** Creates a session row and its token (see `newSession`). */
async function issueSession(db: Database, deps: AuthDeps, user: UserRow, chainStartedAt: Date = deps.now): Promise<Auth> {
  const { row, auth } = await newSession(deps, user, chainStartedAt);
  await db.insert(sessions).values(row);
  // A chain that starts with this session needs no row: refresh reads its start as the
  // session's created_at. Only a refreshed session records where its chain began.
  if (chainStartedAt.getTime() !== deps.now.getTime()) {
    await db.insert(sessionChains).values({ sessionId: row.id, startedAt: toDbTime(chainStartedAt) });
  }
  return auth;
}

export async function register(
  db: Database,
  deps: AuthDeps & { clientAddress: string; registerLimitPerHour?: number },
  audit: AuditContext,
  input: { email: string; password: string },
): Promise<Auth> {
  if (deps.registerLimitPerHour) {
    await reserveQuota(
      db,
      [{ key: `register-ip:${deps.clientAddress}`, max: deps.registerLimitPerHour }],
      HOUR,
      deps.now,
      "Too many registrations from this address",
    );
  }
  const passwordHash = await hashPassword(input.password);
  return db.transaction(async (tx) => {
    // ON CONFLICT instead of a prior SELECT: two racing registrations get one account and one CONFLICT.
    const [inserted] = await tx
      .insert(users)
      .values({ email: input.email, passwordHash })
      .onConflictDoNothing({ target: users.email })
      .returning();
    if (!inserted) throw conflict("An account with this email already exists");
    const user: UserRow = { ...inserted, emailVerified: false, disabled: false };
    await enqueueMail(tx, "email_verification", user.email, deps.now);
    await recordAudit(tx, audit, { action: "auth.register", targetType: "user", targetId: user.id });
    return issueSession(tx, deps, user);
  });
}

/**
 * Two statements around the hash, one before it that writes nothing and one after it that
 * decides:
 *
 * - before: the account and the throttle's counters for this email and address. A counter at
 *   its bar refuses at once (no hash is spent on a throttled email).
 * - after a wrong password, an unknown email or a disabled account: both counters count the
 *   failure and the `auth.login_failed` event is written; a count past its bar (a burst of
 *   guesses that all passed the first read) answers TOO_MANY_REQUESTS, the others UNAUTHORIZED.
 * - after a right password: the session, the `auth.login` event and the forgiving of the
 *   email's earlier failures, written only if neither counter is at its bar in this statement's
 *   own snapshot. So a right guess inside a burst is refused once the burst's failures reach
 *   the bar, exactly like a guess that came after them.
 *
 * Every attempt's answer is therefore decided by one atomic statement against counters all
 * instances share, and a successful sign-in (the common case) writes no throttle row at all
 * unless it has failures to forgive. Unknown emails take the failure path with a dummy hash, so
 * they cost and answer what a wrong password does.
 */
export async function login(
  db: Database,
  deps: AuthDeps & { clientAddress: string },
  audit: AuditContext,
  input: { email: string; password: string },
): Promise<Auth> {
  const keys = { emailKey: emailKey(input.email), addressKey: addressKey(deps.clientAddress) };
  const window = throttleWindow(THROTTLE_WINDOW_SECONDS, deps.now);
  const read = await sendLoginStatement<Partial<CounterRow> & Record<string, unknown>, LoginReadParam>(db, AUTH_LOGIN_READ, {
    email_key: keys.emailKey,
    address_key: keys.addressKey,
    window_floor: window.floor,
    account_email: input.email,
  });
  // One row per open counter (or one row of nulls), each carrying the account's columns.
  refuseIfAtLimit(
    read.filter((r): r is CounterRow & Record<string, unknown> => typeof r.key === "string"),
    loginMaxOf,
    THROTTLE_WINDOW_SECONDS,
    deps.now,
  );
  const user = read[0]?.[users.id.name] ? accountFromRaw(read[0]) : undefined;
  const ok = await verifyPassword(user?.passwordHash ?? (await getDummyHash()), input.password);
  // A disabled account is refused exactly like a wrong password.
  if (!user || !ok || user.disabled) {
    const event = auditRow(audit, {
      action: "auth.login_failed",
      targetType: user ? "user" : undefined,
      targetId: user?.id ?? null,
      details: { reason: !user ? "unknown_email" : !ok ? "wrong_password" : "disabled" },
    });
    const counted = await loginFailed<CounterRow>(db, { ...keys, ...window, ...rowValues("event", event) });
    refuseIfOver(counted, loginMaxOf, THROTTLE_WINDOW_SECONDS, deps.now);
    throw unauthorized(WRONG_CREDENTIALS);
  }
  const { row, auth } = await newSession(deps, user, deps.now);
  const event = auditRow(audit, { action: "auth.login", targetType: "user", targetId: user.id });
  // The statement writes the `auth.login` event's fixed fields itself (action, target type, no details).
  const atLimit = await sendLoginStatement<CounterRow, LoginDecideParam>(db, AUTH_LOGIN_DECIDE, {
    email_key: keys.emailKey,
    address_key: keys.addressKey,
    window_floor: window.floor,
    email_bar: MAX_ATTEMPTS_PER_EMAIL,
    address_bar: MAX_ATTEMPTS_PER_ADDRESS,
    event_id: event.id,
    event_at: event.at,
    event_actor_id: event.actorId,
    event_ip: event.ip,
    event_request_id: event.requestId,
    session_id: row.id,
    session_user_id: row.userId,
    session_token_hash: row.tokenHash,
    session_expires_at: row.expiresAt,
    session_created_at: row.createdAt,
  });
  refuseIfAtLimit(atLimit, loginMaxOf, THROTTLE_WINDOW_SECONDS, deps.now);
  if (needsRehash(user.passwordHash)) {
    const [updated] = await db
      .update(users)
      .set({ passwordHash: await hashPassword(input.password), updatedAt: utcNow })
      .where(eq(users.id, user.id))
      .returning();
    if (updated) return { ...auth, user: toUser({ ...user, ...updated }) };
  }
  return auth;
}

// The sign-in's statements. Before the hash and after a right password: migration 0009's two,
// written in src/db/functions.ts and sent by sendLoginStatement (their bodies prepared where the
// connection keeps prepared statements, else the functions' calls). A failure's statement is
// built here, rendered once and sent with each call's values.
const p = sql.placeholder;
const EVENT_COLUMNS = [
  "id",
  "at",
  "action",
  "actorId",
  "targetType",
  "targetId",
  "ip",
  "requestId",
  "details",
] as const satisfies readonly (keyof ReturnType<typeof auditRow>)[];

/** After a failed check: both counters count it (returned, to judge), and its event. */
const loginFailed = statementTemplate("auth.login.failed", (db) => {
  const counted = countAttempts(db, [p("emailKey"), p("addressKey")], { now: p("now"), floor: p("floor"), expires: p("expires") });
  const event = db.insert(auditEvents).values(rowPlaceholders("event", EVENT_COLUMNS));
  return sql`with counted as (${counted.getSQL()}), audited as (${event.getSQL()}) select * from counted`;
});

/**
 * Verifies the token, then requires its session row: present, unexpired, owned by `sub`,
 * holding this token's hash, and its account not disabled. So a revoked session or a disabled
 * account fails at once, whatever the JWT's `exp` says, in this one query.
 */
export async function authenticate(db: Database, deps: AuthDeps, token: string): Promise<AuthenticatedUser> {
  const claims = await verifyAccessToken(deps.tokens, token, deps.now);
  // Every signed-in request runs this lookup, so it is a prepared query.
  const [row] = await preparedQuery(db, "auth.session", () =>
    db
      .select({
        id: users.id,
        email: users.email,
        role: users.role,
        tokenHash: sessions.tokenHash,
        disabled: accountStatus.disabled,
      })
      .from(sessions)
      .innerJoin(users, eq(users.id, sessions.userId))
      .leftJoin(accountStatus, eq(accountStatus.userId, sessions.userId))
      .where(
        and(
          eq(sessions.id, sql.placeholder("sessionId")),
          eq(sessions.userId, sql.placeholder("userId")),
          gt(sessions.expiresAt, sql.placeholder("now")),
        ),
      )
      .limit(1),
  ).execute({ sessionId: claims.sessionId, userId: claims.userId, now: toDbTime(deps.now) });
  if (!row || row.disabled === true || !digestsEqual(row.tokenHash, await hashToken(token))) {
    throw unauthorized("The session has ended: sign in again");
  }
  return { id: row.id, email: row.email, role: row.role, sessionId: claims.sessionId };
}

export async function getUser(db: Database, userId: string): Promise<User> {
  const [row] = await preparedQuery(db, "auth.user", () =>
    selectUsers(db)
      .where(eq(users.id, sql.placeholder("userId")))
      .limit(1),
  ).execute({ userId });
  if (!row) throw unauthorized();
  return toUser(row as UserRow);
}

/**
 * Rotation: a new session and token; the old session is revoked in the same transaction. The
 * new session keeps the chain's start, so no number of refreshes outlives SESSION_MAX_AGE_SECONDS.
 */
export async function refreshSession(db: Database, deps: AuthDeps, current: AuthenticatedUser): Promise<Auth> {
  return db.transaction(async (tx) => {
    const [chain] = await tx
      .select({ startedAt: sql<string>`coalesce(${sessionChains.startedAt}, ${sessions.createdAt})` })
      .from(sessions)
      .leftJoin(sessionChains, eq(sessionChains.sessionId, sessions.id))
      .where(and(eq(sessions.id, current.sessionId), eq(sessions.userId, current.id)))
      .limit(1);
    const revoked = await tx
      .delete(sessions)
      .where(and(eq(sessions.id, current.sessionId), eq(sessions.userId, current.id)))
      .returning({ id: sessions.id });
    // A concurrent refresh or logout got there first: this token is already spent.
    if (!chain || revoked.length === 0) throw unauthorized("The session has ended: sign in again");
    const startedAt = fromDbTime(String(chain.startedAt));
    if (deps.maxAgeSeconds && deps.now.getTime() >= startedAt.getTime() + deps.maxAgeSeconds * 1000) {
      throw unauthorized("This session has reached its longest life: sign in again");
    }
    const user = await userById(tx, current.id);
    if (!user || user.disabled) throw unauthorized();
    return issueSession(tx, deps, user, startedAt);
  });
}

export async function logout(db: Database, audit: AuditContext, current: AuthenticatedUser): Promise<{ ok: true }> {
  await db.transaction(async (tx) => {
    const rows = await tx
      .delete(sessions)
      .where(and(eq(sessions.id, current.sessionId), eq(sessions.userId, current.id)))
      .returning({ id: sessions.id });
    if (rows.length > 0) await recordAudit(tx, audit, { action: "auth.logout", targetType: "user", targetId: current.id });
  });
  return { ok: true };
}

export async function logoutAll(db: Database, audit: AuditContext, userId: string): Promise<{ ok: true; revoked: number }> {
  return db.transaction(async (tx) => {
    const rows = await tx.delete(sessions).where(eq(sessions.userId, userId)).returning({ id: sessions.id });
    await recordAudit(tx, audit, { action: "auth.logout_all", targetType: "user", targetId: userId, details: { revoked: rows.length } });
    return { ok: true as const, revoked: rows.length };
  });
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

export async function revokeSession(db: Database, audit: AuditContext, userId: string, sessionId: string): Promise<{ ok: true }> {
  return db.transaction(async (tx) => {
    const rows = await tx
      .delete(sessions)
      .where(and(eq(sessions.id, sessionId), eq(sessions.userId, userId)))
      .returning({ id: sessions.id });
    // Another user's session is reported exactly like a missing one.
    if (rows.length === 0) throw notFound("Session");
    await recordAudit(tx, audit, { action: "auth.session_revoked", targetType: "user", targetId: userId });
    return { ok: true as const };
  });
}

/**
 * Checks the current password (wrong → FORBIDDEN, counted by the login throttle), stores the
 * new hash, and leaves only the session of the returned token alive.
 */
export async function changePassword(
  db: Database,
  deps: AuthDeps & { clientAddress: string },
  audit: AuditContext,
  current: AuthenticatedUser,
  input: { currentPassword: string; newPassword: string },
): Promise<Auth> {
  await reserveLoginAttempt(db, current.email, deps.clientAddress, deps.now);
  const user = await userById(db, current.id);
  if (!user) throw unauthorized();
  if (!(await verifyPassword(user.passwordHash, input.currentPassword))) {
    throw forbidden("The current password is incorrect");
  }
  await forgiveAttempt(db, current.email, deps.clientAddress);
  const passwordHash = await hashPassword(input.newPassword);
  return db.transaction(async (tx) => {
    const [updated] = await tx.update(users).set({ passwordHash, updatedAt: utcNow }).where(eq(users.id, current.id)).returning();
    if (!updated) throw unauthorized();
    const auth = await issueSession(tx, deps, { ...user, ...updated });
    const newSessionId = (await verifyAccessToken(deps.tokens, auth.accessToken, deps.now)).sessionId;
    await tx.delete(sessions).where(and(eq(sessions.userId, current.id), ne(sessions.id, newSessionId)));
    await recordAudit(tx, audit, { action: "auth.password_changed", targetType: "user", targetId: current.id });
    return auth;
  });
}

/**
 * The same work whatever the email: one quota upsert, one outbox row and one event (its target
 * found by a subquery that costs the same either way). Whether an account exists is decided by
 * the delivery job, after this answer has gone.
 */
export async function requestPasswordReset(
  db: Database,
  deps: { now: Date; clientAddress: string },
  audit: AuditContext,
  email: string,
): Promise<{ ok: true }> {
  await reserveQuota(
    db,
    [
      { key: `reset-email:${email}`, max: RESET_REQUESTS_PER_EMAIL },
      { key: `reset-ip:${deps.clientAddress}`, max: RESET_REQUESTS_PER_ADDRESS },
    ],
    HOUR,
    deps.now,
    "Too many password-reset requests",
  );
  await db.transaction(async (tx) => {
    await enqueueMail(tx, "password_reset", email, deps.now);
    await recordAudit(tx, audit, {
      action: "auth.password_reset_requested",
      targetType: "user",
      targetId: sql`(select ${users.id} from ${users} where ${users.email} = ${email})`,
    });
  });
  return { ok: true };
}

/** Spends the token, sets the password, ends every session and the email's login throttle. */
export async function resetPassword(
  db: Database,
  deps: AuthDeps,
  audit: AuditContext,
  input: { token: string; newPassword: string },
): Promise<Auth> {
  const passwordHash = await hashPassword(input.newPassword);
  return db.transaction(async (tx) => {
    const userId = await consumeAccountToken(tx, "password_reset", input.token, deps.now);
    if (!userId) throw badRequest(BAD_RESET_TOKEN);
    const user = await userById(tx, userId);
    if (!user || user.disabled) throw badRequest(BAD_RESET_TOKEN);
    const [updated] = await tx.update(users).set({ passwordHash, updatedAt: utcNow }).where(eq(users.id, userId)).returning();
    const revoked = await tx.delete(sessions).where(eq(sessions.userId, userId)).returning({ id: sessions.id });
    await spendAllAccountTokens(tx, userId, "password_reset", deps.now);
    await clearEmailThrottle(tx, user.email);
    await recordAudit(tx, audit, {
      action: "auth.password_reset",
      targetType: "user",
      targetId: userId,
      details: { revoked: revoked.length },
    });
    return issueSession(tx, deps, { ...user, ...updated! });
  });
}

export async function requestEmailVerification(db: Database, deps: { now: Date }, current: AuthenticatedUser): Promise<{ ok: true }> {
  const user = await userById(db, current.id);
  if (!user) throw unauthorized();
  if (user.emailVerified) throw conflict("This email address is already verified");
  await enqueueMail(db, "email_verification", user.email, deps.now);
  return { ok: true };
}

export async function verifyEmail(db: Database, deps: { now: Date }, audit: AuditContext, token: string): Promise<User> {
  return db.transaction(async (tx) => {
    const userId = await consumeAccountToken(tx, "email_verification", token, deps.now);
    if (!userId) throw badRequest(BAD_VERIFY_TOKEN);
    await tx
      .insert(accountStatus)
      .values({ userId, emailVerified: true })
      .onConflictDoUpdate({ target: accountStatus.userId, set: { emailVerified: true, updatedAt: utcNow } });
    await recordAudit(tx, audit, { action: "auth.email_verified", targetType: "user", targetId: userId });
    const user = await userById(tx, userId);
    if (!user) throw badRequest(BAD_VERIFY_TOKEN);
    return toUser(user);
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
