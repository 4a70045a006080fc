import { afterAll, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPostgresDatabase } from "../../src/db/client";
import { mailOutbox } from "../../src/db/schema";
import { runDeliverMail } from "../../src/jobs/deliver-mail";
import { fileTransport, smtpTransport } from "../../src/mail/transport";
import { systemAudit } from "../../src/services/audit";
import * as auth from "../../src/services/auth";
import { MAIL_LEASE_SECONDS } from "../../src/services/mail";
import { callerFor, createTestClock, createTestDeps, uniqueEmail } from "../support/app";
import { getTestDatabase, onPostgres, resetDatabase } from "../support/db";
import { bodyOf, type SmtpSink, startSmtpSink } from "../support/smtp-sink";

setDefaultTimeout(60_000);

const handle = await getTestDatabase();
let sink: SmtpSink;
beforeAll(async () => {
  sink = await startSmtpSink();
});
afterAll(() => sink.close());
beforeEach(async () => {
  await resetDatabase(handle);
  sink.received.length = 0;
  sink.refuseNext(0);
});

/** Queues a reset mail the way the procedure does, without its after-commit delivery. */
async function queueReset(deps: ReturnType<typeof createTestDeps>, email: string) {
  await auth.requestPasswordReset(deps.db, { now: deps.clock(), clientAddress: "198.51.100.1" }, systemAudit(deps.clock()), email);
}

/** An account made through the service (no after-commit delivery to race the test), its mail queue emptied. */
async function makeUser(deps: ReturnType<typeof createTestDeps>) {
  const email = uniqueEmail();
  const made = await auth.register(deps.db, { tokens: deps.tokens, now: deps.clock(), clientAddress: "x" }, systemAudit(), {
    email,
    password: "a long passphrase",
  });
  await handle.db.delete(mailOutbox);
  return made;
}

async function outboxRows() {
  return handle.db.select().from(mailOutbox);
}

describe("mail: happy path", () => {
  test("smtp: a reset mail reaches a real SMTP listener on loopback, once, with a working link", async () => {
    const deps = createTestDeps(handle.db, { mail: smtpTransport(sink.url), env: { APP_URL: "https://shop.example" } as never });
    const user = await makeUser(deps);
    await queueReset(deps, user.user.email);
    const report = await runDeliverMail(deps);
    expect(report).toMatchObject({ ok: true, sent: 1 });
    expect(sink.received).toHaveLength(1);
    expect(sink.received[0]!.to).toEqual([user.user.email]);
    const token = /https:\/\/shop\.example\/reset-password\?token=([A-Za-z0-9_-]+)/.exec(bodyOf(sink.received[0]!))?.[1];
    expect(token).toBeDefined();
    const fresh = await callerFor(deps).auth.resetPassword({ token: token!, newPassword: "a brand new secret 1" });
    expect(fresh.user.id).toBe(user.user.id);
    expect((await outboxRows()).map((r) => r.status)).toEqual(["sent"]);
  });

  test("file: one JSON file per message with to, subject and text", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mail-"));
    try {
      const deps = createTestDeps(handle.db, { mail: fileTransport(dir) });
      const email = uniqueEmail();
      await auth.register(deps.db, { tokens: deps.tokens, now: deps.clock(), clientAddress: "x" }, systemAudit(), {
        email,
        password: "a long passphrase",
      });
      await runDeliverMail(deps);
      const files = (await readdir(dir)).filter((f) => f.endsWith(".json"));
      expect(files).toHaveLength(1);
      const mail = JSON.parse(await readFile(join(dir, files[0]!), "utf8"));
      expect(mail.to).toBe(email);
      expect(mail.subject).toBe("Confirm your email address");
      expect(mail.text).toMatch(/\/verify-email\?token=[A-Za-z0-9_-]{43}/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("mail: errors and retries", () => {
  test("a sink that refuses, then accepts: retried after the backoff, delivered exactly once", async () => {
    const clock = createTestClock();
    const deps = createTestDeps(handle.db, { clock, mail: smtpTransport(sink.url) });
    const user = await makeUser(deps);
    await queueReset(deps, user.user.email);
    sink.refuseNext(1);
    const first = await runDeliverMail(deps);
    expect(first).toMatchObject({ sent: 0, retried: 1 });
    expect(sink.refused).toBeGreaterThanOrEqual(1);
    expect(sink.received).toHaveLength(0);
    // Not due yet: nothing is sent before the backoff has passed.
    expect(await runDeliverMail(deps)).toMatchObject({ claimed: 0 });
    clock.advance(31);
    expect(await runDeliverMail(deps)).toMatchObject({ sent: 1 });
    expect(await runDeliverMail(deps)).toMatchObject({ claimed: 0 });
    expect(sink.received).toHaveLength(1);
    const [row] = await outboxRows();
    expect(row).toMatchObject({ status: "sent", attempts: 2 });
    // The refused attempt's token was withdrawn: only the delivered link works.
    const { accountTokens } = await import("../../src/db/schema");
    expect(await handle.db.select().from(accountTokens)).toHaveLength(1);
  });

  test("a listener that is not there: the row waits for a retry, nothing is lost", async () => {
    const deps = createTestDeps(handle.db, { mail: smtpTransport("smtp://127.0.0.1:9") });
    const user = await makeUser(deps);
    await queueReset(deps, user.user.email);
    const report = await runDeliverMail(deps);
    expect(report).toMatchObject({ sent: 0, retried: 1 });
    expect((await outboxRows())[0]).toMatchObject({ status: "pending", attempts: 1 });
  });

  test("a row left 'sending' by a host that died is marked failed after the lease, never resent", async () => {
    const clock = createTestClock();
    const deps = createTestDeps(handle.db, { clock, mail: smtpTransport(sink.url) });
    const user = await makeUser(deps);
    await queueReset(deps, user.user.email);
    await handle.db
      .update(mailOutbox)
      .set({ status: "sending", claimedAt: new Date(clock().getTime()).toISOString().replace("T", " ").replace("Z", "") });
    clock.advance(MAIL_LEASE_SECONDS + 1);
    expect(await runDeliverMail(deps)).toMatchObject({ abandoned: 1, sent: 0 });
    expect(sink.received).toHaveLength(0);
    expect((await outboxRows())[0]!.status).toBe("failed");
  });
});

describe("mail: security", () => {
  test("an unknown email's reset mail is never sent, and the outbox row holds no token or link", async () => {
    const deps = createTestDeps(handle.db, { mail: smtpTransport(sink.url) });
    await queueReset(deps, "nobody-here@example.com");
    expect(await runDeliverMail(deps)).toMatchObject({ sent: 0, skipped: 1 });
    expect(sink.received).toHaveLength(0);
    const rows = await outboxRows();
    expect(JSON.stringify(rows)).not.toMatch(/token=|reset-password/);
  });

  test("two delivery jobs racing over the same outbox: every message goes out exactly once", async () => {
    // On Postgres the second job runs on its own pool, so the two really interleave.
    const other = onPostgres && handle.url ? await createPostgresDatabase({ url: handle.url, poolMax: 4, prepare: false }) : undefined;
    try {
      const deps = createTestDeps(handle.db, { mail: smtpTransport(sink.url) });
      const depsB = createTestDeps(other?.db ?? handle.db, { mail: smtpTransport(sink.url) });
      const emails: string[] = [];
      for (let i = 0; i < 12; i++) {
        const email = uniqueEmail("race");
        emails.push(email);
        await auth.register(deps.db, { tokens: deps.tokens, now: deps.clock(), clientAddress: "x" }, systemAudit(), {
          email,
          password: "a long passphrase",
        });
      }
      const reports = await Promise.all([runDeliverMail(deps), runDeliverMail(depsB), runDeliverMail(deps)]);
      expect(reports.reduce((n, r) => n + Number(r.sent), 0)).toBe(12);
      expect(sink.received).toHaveLength(12);
      expect(sink.received.map((m) => m.to[0]).sort()).toEqual([...emails].sort());
      expect(await runDeliverMail(deps)).toMatchObject({ claimed: 0 });
    } finally {
      await other?.close();
    }
  });
});
