// A small SMTP server on loopback for the mail tests: it speaks enough of RFC 5321 for
// nodemailer (greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and keeps what it accepts.
// `refuseNext(n)` makes the next n transactions fail with a temporary error (451 at MAIL FROM).
import { createServer, type Server, type Socket } from "node:net";

export interface ReceivedMail {
  from: string;
  to: string[];
  data: string;
}

export interface SmtpSink {
  url: string;
  received: ReceivedMail[];
  refused: number;
  refuseNext(n: number): void;
  close(): Promise<void>;
}

export async function startSmtpSink(): Promise<SmtpSink> {
  const received: ReceivedMail[] = [];
  const sockets = new Set<Socket>();
  let toRefuse = 0;
  const state = { refused: 0 };

  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffer = "";
    let inData = false;
    let current: ReceivedMail | null = null;
    let dataLines: string[] = [];
    const reply = (line: string) => socket.write(`${line}\r\n`);
    reply("220 sink.test ESMTP ready");
    socket.on("data", (chunk) => {
      buffer += chunk.toString("utf8");
      for (let i = buffer.indexOf("\r\n"); i >= 0; i = buffer.indexOf("\r\n")) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        if (inData) {
          if (line === ".") {
            inData = false;
            received.push({ ...current!, data: dataLines.join("\r\n") });
            current = null;
            reply("250 2.0.0 queued");
          } else dataLines.push(line.startsWith("..") ? line.slice(1) : line);
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === "EHLO") {
          socket.write("250-sink.test\r\n250 8BITMIME\r\n");
        } else if (verb === "HELO") reply("250 sink.test");
        else if (verb === "MAIL") {
          if (toRefuse > 0) {
            toRefuse--;
            state.refused++;
            reply("451 4.3.0 try again later");
          } else {
            current = { from: /<([^>]*)>/.exec(line)?.[1] ?? "", to: [], data: "" };
            reply("250 2.1.0 ok");
          }
        } else if (verb === "RCPT") {
          if (!current) reply("503 5.5.1 MAIL first");
          else {
            current.to.push(/<([^>]*)>/.exec(line)?.[1] ?? "");
            reply("250 2.1.5 ok");
          }
        } else if (verb === "DATA") {
          if (!current) reply("503 5.5.1 MAIL first");
          else {
            inData = true;
            dataLines = [];
            reply("354 end with <CRLF>.<CRLF>");
          }
        } else if (verb === "RSET") {
          current = null;
          reply("250 2.0.0 ok");
        } else if (verb === "NOOP") reply("250 2.0.0 ok");
        else if (verb === "QUIT") {
          reply("221 2.0.0 bye");
          socket.end();
        } else reply("502 5.5.2 command not implemented");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("sink has no port");
  return {
    url: `smtp://127.0.0.1:${address.port}`,
    received,
    get refused() {
      return state.refused;
    },
    refuseNext(n: number) {
      toRefuse = n;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The body of a received mail with quoted-printable soft breaks and escapes undone. */
export function bodyOf(mail: ReceivedMail): string {
  const [, ...body] = mail.data.split("\r\n\r\n");
  return body
    .join("\r\n\r\n")
    .replace(/=\r\n/g, "")
    .replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}
