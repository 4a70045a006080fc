import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { mailOutbox } from "../../src/db/schema";
import type { AppDeps } from "../../src/deps";
import { runDeliverMail } from "../../src/jobs/deliver-mail";
import { fileTransport, type MailTransport } from "../../src/mail/transport";

export interface Mailbox {
  dir: string;
  transport: MailTransport;
  /** Runs the delivery job (what the after-commit kick missed), then reads every message. */
  deliver(deps: AppDeps): Promise<{ to: string; subject: string; text: string }[]>;
  /** The token of the newest link of this kind mailed to `to`, after delivering. */
  tokenFor(deps: AppDeps, to: string, kind: "reset-password" | "verify-email"): Promise<string>;
  clear(): Promise<void>;
  remove(): Promise<void>;
}

/** A real file transport into a temporary folder (MAIL_TRANSPORT=file), read back by tests. */
export async function createMailbox(): Promise<Mailbox> {
  const dir = await mkdtemp(join(tmpdir(), "mailbox-"));
  const read = async () => {
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith(".json")).sort();
    return Promise.all(names.map(async (n) => JSON.parse(await readFile(join(dir, n), "utf8"))));
  };
  const box: Mailbox = {
    dir,
    transport: fileTransport(dir),
    async deliver(deps) {
      await runDeliverMail({ ...deps, mail: box.transport });
      // An after-commit delivery may hold a row mid-send: wait until none is in flight.
      for (let i = 0; i < 200; i++) {
        const sending = await deps.db.select({ id: mailOutbox.id }).from(mailOutbox).where(eq(mailOutbox.status, "sending"));
        if (sending.length === 0) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      return read();
    },
    async tokenFor(deps, to, kind) {
      const mails = (await box.deliver(deps)).filter((m) => m.to === to);
      const re = new RegExp(`/${kind}\\?token=([A-Za-z0-9_-]+)`);
      const tokens = mails.map((m) => re.exec(m.text)?.[1]).filter((t): t is string => !!t);
      if (tokens.length === 0) throw new Error(`no ${kind} mail to ${to}`);
      return tokens[tokens.length - 1]!;
    },
    async clear() {
      for (const n of await readdir(dir)) await rm(join(dir, n), { force: true });
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
  return box;
}
