// Account state added by the accounts work (flags, single-use tokens, session chains, the mail
// outbox and the audit trail). The design's five tables stay as they are; every row here is keyed
// to them. Listed in docs/operations.md under "Accounts: tables".
import { sql } from "drizzle-orm";
import { boolean, check, index, integer, jsonb, pgTable, timestamp, uuid, varchar } from "drizzle-orm/pg-core";
import { createdAt, updatedAt } from "./columns";
import { sessions } from "./sessions";
import { users } from "./users";

// One row per account that has ever been verified or disabled; no row means neither. The
// per-request session lookup left-joins it, so the disabled flag costs no extra round trip.
export const accountStatus = pgTable("account_status", {
  userId: uuid("user_id")
    .primaryKey()
    .references(() => users.id, { onDelete: "cascade" }),
  emailVerified: boolean("email_verified").notNull().default(false),
  disabled: boolean("disabled").notNull().default(false),
  updatedAt: updatedAt(),
});

export const accountTokenPurposes = ["password_reset", "email_verification"] as const;
export type AccountTokenPurpose = (typeof accountTokenPurposes)[number];

// Password-reset and email-verification tokens: only the SHA-256 of the token is stored.
export const accountTokens = pgTable(
  "account_tokens",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    purpose: varchar("purpose", { length: 32, enum: accountTokenPurposes }).notNull(),
    tokenHash: varchar("token_hash", { length: 64 }).notNull().unique("account_tokens_token_hash_key"),
    expiresAt: timestamp("expires_at", { mode: "string" }).notNull(),
    usedAt: timestamp("used_at", { mode: "string" }),
    createdAt: createdAt(),
  },
  (t) => [
    index("idx_account_tokens_user_id").on(t.userId),
    index("idx_account_tokens_expires_at").on(t.expiresAt),
    check("account_tokens_purpose_check", sql`${t.purpose} in ('password_reset', 'email_verification')`),
  ],
);

// When the login that began a refresh chain happened; each rotated session carries it forward.
export const sessionChains = pgTable("session_chains", {
  sessionId: uuid("session_id")
    .primaryKey()
    .references(() => sessions.id, { onDelete: "cascade" }),
  startedAt: timestamp("started_at", { mode: "string" }).notNull(),
});

export const mailKinds = ["password_reset", "email_verification"] as const;
export type MailKind = (typeof mailKinds)[number];
export const mailStatuses = ["pending", "sending", "sent", "skipped", "failed"] as const;
export type MailStatus = (typeof mailStatuses)[number];

// The outbox: a row is written in the transaction of the change that causes the mail and says
// what to send, never a token. The delivery job renders the message (creating the token then),
// so neither a token nor a link is ever stored in clear.
export const mailOutbox = pgTable(
  "mail_outbox",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    kind: varchar("kind", { length: 32, enum: mailKinds }).notNull(),
    recipient: varchar("recipient", { length: 255 }).notNull(),
    status: varchar("status", { length: 16, enum: mailStatuses }).notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: timestamp("next_attempt_at", { mode: "string" }).notNull(),
    claimedAt: timestamp("claimed_at", { mode: "string" }),
    claimedBy: varchar("claimed_by", { length: 255 }),
    sentAt: timestamp("sent_at", { mode: "string" }),
    lastError: varchar("last_error", { length: 500 }),
    createdAt: createdAt(),
  },
  (t) => [
    index("idx_mail_outbox_status_next_attempt_at").on(t.status, t.nextAttemptAt),
    index("idx_mail_outbox_created_at").on(t.createdAt),
    check("mail_outbox_kind_check", sql`${t.kind} in ('password_reset', 'email_verification')`),
    check("mail_outbox_status_check", sql`${t.status} in ('pending', 'sending', 'sent', 'skipped', 'failed')`),
  ],
);

// The security event log. No foreign keys: an event outlives what it names.
export const auditEvents = pgTable(
  "audit_events",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    at: timestamp("at", { mode: "string" }).notNull(),
    action: varchar("action", { length: 64 }).notNull(),
    actorId: uuid("actor_id"),
    targetType: varchar("target_type", { length: 32 }),
    targetId: uuid("target_id"),
    ip: varchar("ip", { length: 64 }),
    requestId: varchar("request_id", { length: 128 }),
    details: jsonb("details").notNull().default(sql`'{}'::jsonb`),
  },
  (t) => [
    index("idx_audit_events_at_id").on(t.at, t.id),
    index("idx_audit_events_actor_id_at_id").on(t.actorId, t.at, t.id),
    index("idx_audit_events_target_id_at_id").on(t.targetId, t.at, t.id),
    index("idx_audit_events_action_at_id").on(t.action, t.at, t.id),
  ],
);
