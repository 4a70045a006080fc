import type { Env } from "../env";
import type { Logger } from "../lib/logger";

export interface MailMessage {
  to: string;
  from: string;
  subject: string;
  text: string;
}

/** Delivers one message or throws; a throw means "not delivered" and the outbox retries it. */
export interface MailTransport {
  readonly name: "log" | "file" | "smtp";
  send(message: MailMessage): Promise<void>;
  close?(): Promise<void>;
}

/** For development: the whole message, links included, goes to the log. */
export function logTransport(logger: Logger): MailTransport {
  return {
    name: "log",
    async send(message) {
      logger.info("mail", { to: message.to, subject: message.subject, text: message.text });
    },
  };
}

/** One JSON file per message under `dir` ({ to, from, subject, text }); written whole, then renamed. */
export function fileTransport(dir: string): MailTransport {
  return {
    name: "file",
    async send(message) {
      const { mkdir, rename, writeFile } = await import("node:fs/promises");
      await mkdir(dir, { recursive: true });
      const name = `${new Date().toISOString().replace(/[:.]/g, "-")}-${crypto.randomUUID()}.json`;
      const tmp = `${dir}/.${name}.tmp`;
      await writeFile(tmp, JSON.stringify(message, null, 2), { mode: 0o600 });
      await rename(tmp, `${dir}/${name}`);
    },
  };
}

/** SMTP through nodemailer, loaded only when chosen (the Worker bundle never reaches it). */
export function smtpTransport(url: string): MailTransport {
  let transporter: Promise<{ sendMail(m: MailMessage): Promise<unknown>; close(): void }> | undefined;
  const open = () =>
    (transporter ??= import("nodemailer").then((m) =>
      m.createTransport({ url, connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 20_000 }),
    ));
  return {
    name: "smtp",
    async send(message) {
      await (await open()).sendMail(message);
    },
    async close() {
      if (transporter) (await transporter).close();
    },
  };
}

export function createMailTransport(env: Env, logger: Logger): MailTransport {
  switch (env.MAIL_TRANSPORT) {
    case "file":
      return fileTransport(env.MAIL_DIR);
    case "smtp":
      return smtpTransport(env.SMTP_URL!);
    default:
      return logTransport(logger);
  }
}

// One transport per environment object: the Bun host builds its deps once, so its SMTP
// connection settings and file directory are created once.
const transports = new WeakMap<object, MailTransport>();

export function mailTransportFor(deps: { env: Env; logger: Logger; mail?: MailTransport }): MailTransport {
  if (deps.mail) return deps.mail;
  let t = transports.get(deps.env);
  if (!t) {
    t = createMailTransport(deps.env, deps.logger);
    transports.set(deps.env, t);
  }
  return t;
}
