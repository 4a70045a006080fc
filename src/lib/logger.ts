import { writeSync } from "node:fs";

export type LogLevel = "debug" | "info" | "warn" | "error";
const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

// `new Date().toISOString()` of the current millisecond, formatted once per millisecond: a busy
// server logs many request lines in the same one, and formatting the date was about a third of
// the cost of a request line.
let isoMs = Number.NaN;
let isoText = "";
function isoNow(): string {
  const ms = Date.now();
  if (ms !== isoMs) {
    isoText = new Date(ms).toISOString();
    isoMs = ms;
  }
  return isoText;
}

/** One JSON object per line, so logs can be grepped and shipped as they are. */
export function createLogger(level: LogLevel = "info", write: (line: string) => void = (l) => console.log(l)): Logger {
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (order[lvl] < order[level]) return;
    write(JSON.stringify({ time: isoNow(), level: lvl, msg, ...fields }));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}

/**
 * A line sink for a long-running host (src/server.ts): lines are collected and written in one
 * chunk at most `flushAfterMs` later, so the request path never waits on a write to stdout and
 * a busy server makes one write per batch of lines rather than one per few requests (each write
 * is a system call: with the flush at the end of every event-loop turn, the request log's writes
 * were about 5 % of the service's CPU under `products.byId` load, in a profile against the raw
 * baseline, bench/README.md). A large backlog is written at once, and whatever is left is written
 * synchronously when the process exits. Not for the Worker, whose isolate may be frozen between
 * requests (it keeps console.log).
 */
export function createBufferedWriter(
  sink: (chunk: string) => void = (chunk) => void process.stdout.write(chunk),
  exitSink: (chunk: string) => void = (chunk) => writeSync(1, chunk),
  maxBufferedChars = 64 * 1024,
  flushAfterMs = 20,
): { write: (line: string) => void; flush: () => void } {
  let pending: string[] = [];
  let chars = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const take = () => {
    const chunk = pending.join("");
    pending = [];
    chars = 0;
    return chunk;
  };
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (chars > 0) sink(take());
  };
  process.once("exit", () => {
    if (chars > 0) exitSink(take());
  });
  return {
    write(line: string) {
      pending.push(line, "\n");
      chars += line.length + 1;
      if (chars >= maxBufferedChars) flush();
      else if (timer === undefined) {
        timer = setTimeout(flush, flushAfterMs);
        // Waiting lines never keep the process alive: the exit handler writes them.
        (timer as { unref?: () => void }).unref?.();
      }
    },
    flush,
  };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * What the server log keeps of an error. Drizzle's query errors put the bound parameters
 * (emails, password hashes) into their message, so for those only the SQL text with its
 * placeholders and the driver's own error are logged.
 */
export function describeError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { error: String(error) };
  const query = (error as { query?: unknown }).query;
  if (typeof query === "string" && "params" in error) {
    const cause = error.cause instanceof Error ? error.cause : undefined;
    return {
      error: cause?.message ?? "query failed",
      errorName: cause?.name ?? error.name,
      sqlState: (cause as { code?: unknown } | undefined)?.code,
      query,
      // The stack's first lines repeat the message, parameters included: keep only the frames.
      stack: error.stack
        ?.split("\n")
        .filter((line) => line.trimStart().startsWith("at "))
        .join("\n"),
    };
  }
  return { error: error.message, errorName: error.name, stack: error.stack, cause: error.cause ? String(error.cause) : undefined };
}
