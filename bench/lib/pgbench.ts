// pgbench with custom scripts built from the statement texts of bench/baseline-sql.ts, so the
// pgbench column runs the service's statements with no HTTP and no JS at all. Every parameter
// the service binds is bound here too (pgbench sends `:name` variables as parameters with
// -M extended/prepared), with the same text forms: uuid[] and int[] literals for the order's
// function call, one uuid and one integer per decrement for the plain transaction. The values
// are fixed per script variant (-D variables; pgbench picks one of the variant files at random
// per transaction), so no statement carries a subquery the service does not send. The one
// exception: fresh ids, which pgbench cannot make as text, are `gen_random_uuid()` (the order's
// and its items' in the function call; in the plain transaction Postgres makes the order id and
// the items take it back with \gset, as a parameter).

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  listProductsStatement,
  loginDecide,
  loginRead,
  MAX_TOTAL,
  ORDER_PLACE,
  PLAIN_ORDER_INSERT,
  PLAIN_SESSION_INSERT,
  PLAIN_TAKE_STOCK,
  PLAIN_USER_BY_EMAIL,
  PRODUCT_BY_ID,
  plainItemsInsert,
  SESSION_LOOKUP,
} from "../baseline-sql";
import { runCommand } from "./proc";

/** Replaces $1…$n by pgbench variables (`:name`) or, where stated, an SQL expression. */
function bind(text: string, exprs: Record<number, string>): string {
  return text.replace(/\$(\d+)/g, (_, n: string) => {
    const e = exprs[Number(n)];
    if (e === undefined) throw new Error(`no binding for $${n}`);
    return e;
  });
}

const oneLine = (s: string) => s.replace(/\s+/g, " ").trim();

export type PgbenchScript = "session" | "list" | "byId" | "order" | "order-plain" | "login" | "login-plain" | LoginStatement;
/**
 * The login's statements one at a time, to say where its Postgres time goes: the service's
 * read of the account and its counters and the statement that decides after the hash (session,
 * event, forgiving), the plain lookup and insert.
 */
export const LOGIN_STATEMENTS = ["login-read", "login-decide", "login-lookup", "login-insert"] as const;
export type LoginStatement = (typeof LOGIN_STATEMENTS)[number];
const isLoginStatement = (kind: PgbenchScript): kind is LoginStatement => (LOGIN_STATEMENTS as readonly string[]).includes(kind);

export interface PgbenchData {
  sessions: { sessionId: string; userId: string; email: string }[];
  products: { id: string; price: string }[];
  /** The `now` the service binds into the session lookup (any time before the sessions expire). */
  now: string;
}

const VARIANTS = 64;

/** A small seeded generator, so every run draws the same orders. */
function seeded(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const toCents = (money: string) => {
  const [w, f = ""] = money.split(".");
  return Number(w) * 100 + Number(f.padEnd(2, "0").slice(0, 2));
};
const fromCents = (c: number) => `${Math.floor(c / 100)}.${String(c % 100).padStart(2, "0")}`;

/**
 * The variant scripts of one kind and the -D variables they use. `mode` is pgbench's protocol:
 * with `prepared` the sign-in's statements are the bodies the service prepares, otherwise the
 * functions' calls it sends unnamed (bench/baseline-sql.ts `loginRead`).
 */
export function pgbenchScripts(
  kind: PgbenchScript,
  data: PgbenchData,
  mode: "simple" | "extended" | "prepared" = "extended",
): { scripts: string[]; vars: Record<string, string> } {
  const vars: Record<string, string> = { now: data.now, one: "1", pending: "pending", maxtotal: MAX_TOTAL };
  const scripts: string[] = [];
  const random = seeded(19);
  const session = (k: number) => {
    const s = data.sessions[k % data.sessions.length];
    vars[`s${k}`] = s.sessionId;
    vars[`u${k}`] = s.userId;
    return `${oneLine(bind(SESSION_LOOKUP, { 1: `:s${k}`, 2: `:u${k}`, 3: ":now", 4: ":one" }))};`;
  };
  /** 1 to 3 distinct products in id order, quantity 1 to 3 (what bench/wrk/create.lua sends). */
  const drawLines = () => {
    const n = 1 + Math.floor(random() * 3);
    const picked = new Map<string, { id: string; price: string; quantity: number }>();
    while (picked.size < Math.min(n, data.products.length)) {
      const p = data.products[Math.floor(random() * data.products.length)];
      picked.set(p.id, { ...p, quantity: 1 + Math.floor(random() * 3) });
    }
    return [...picked.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  };
  for (let k = 0; k < VARIANTS; k++) {
    switch (kind) {
      case "session":
        scripts.push(`${session(k)}\n`);
        break;
      case "list":
        vars.limit = "21";
        scripts.push(`${oneLine(bind(listProductsStatement({ sort: "newest", limit: 20 }).text, { 1: ":limit" }))};\n`);
        break;
      case "byId":
        vars[`p${k}`] = data.products[Math.floor(random() * data.products.length)].id;
        scripts.push(`${oneLine(bind(PRODUCT_BY_ID, { 1: `:p${k}`, 2: ":one" }))};\n`);
        break;
      case "order": {
        // What the service sends per order: the session lookup, then the function call in its own
        // transaction.
        const lines = drawLines();
        vars[`ids${k}`] = `{${lines.map((l) => l.id).join(",")}}`;
        vars[`qs${k}`] = `{${lines.map((l) => l.quantity).join(",")}}`;
        const order = bind(ORDER_PLACE, {
          1: "gen_random_uuid()",
          2: `:u${k}`,
          // Fresh item ids, one per line (pgbench cannot make them as a text literal).
          3: `array[${lines.map(() => "gen_random_uuid()").join(", ")}]`,
          4: `:ids${k}`,
          5: `:qs${k}`,
          6: ":maxtotal",
          7: "null",
          8: "null",
        });
        scripts.push([session(k), "begin;", `${oneLine(order)};`, "commit;", ""].join("\n"));
        break;
      }
      case "order-plain": {
        // The plainest correct order: the session lookup, then one transaction of a guarded
        // decrement per line in id order, the order and one multi-row insert of its items.
        const lines = drawLines();
        const out = [session(k), "begin;"];
        lines.forEach((l, i) => {
          vars[`p${k}_${i}`] = l.id;
          vars[`q${k}_${i}`] = String(l.quantity);
          vars[`c${k}_${i}`] = l.price;
          out.push(`${bind(PLAIN_TAKE_STOCK, { 1: `:q${k}_${i}`, 2: `:p${k}_${i}` })};`);
        });
        vars[`t${k}`] = fromCents(lines.reduce((sum, l) => sum + toCents(l.price) * l.quantity, 0));
        // The baseline makes the order id itself; here Postgres does, and hands it to the items.
        out.push(
          bind(PLAIN_ORDER_INSERT, { 1: "gen_random_uuid()", 2: `:u${k}`, 3: `:t${k}` }).replace(
            "returning created_at",
            "returning id, created_at",
          ),
          "\\gset o_",
        );
        out.push(
          `${bind(
            plainItemsInsert(lines.length),
            Object.fromEntries([
              [1, ":o_id"],
              ...lines.flatMap((_, i) => [
                [3 * i + 2, `:p${k}_${i}`],
                [3 * i + 3, `:q${k}_${i}`],
                [3 * i + 4, `:c${k}_${i}`],
              ]),
            ]),
          )};`,
        );
        out.push("commit;", "");
        scripts.push(out.join("\n"));
        break;
      }
      case "login":
      case "login-plain":
      case "login-read":
      case "login-decide":
      case "login-lookup":
      case "login-insert": {
        // A right password's statements, the argon2 verify between them left out (it is CPU of
        // the server, not of Postgres): the service's two, or the plain lookup and insert.
        const s = data.sessions[k % data.sessions.length];
        vars[`e${k}`] = s.email;
        vars[`ek${k}`] = `email:${s.email}`;
        vars[`u${k}`] = s.userId;
        Object.assign(vars, {
          zero: "0",
          ten: "10",
          hundred: "100",
          ak: "ip:127.0.0.1",
          floor: "2000-01-01 00:00:00",
          later: "2999-01-01 00:00:00",
        });
        Object.assign(vars, { action: "auth.login", user: "user", ip: "127.0.0.1", rid: "pgbench", details: "{}" });
        const lookup = `${oneLine(bind(PLAIN_USER_BY_EMAIL, { 1: `:e${k}` }))};`;
        const insert = `${oneLine(bind(PLAIN_SESSION_INSERT, { 1: "gen_random_uuid()", 2: `:u${k}`, 3: "md5(random()::text)", 4: ":later", 5: ":now" }))};`;
        if (kind === "login-plain" || kind === "login-lookup" || kind === "login-insert") {
          scripts.push([...(kind === "login-insert" ? [] : [lookup]), ...(kind === "login-lookup" ? [] : [insert]), ""].join("\n"));
          break;
        }
        const read = bind(loginRead(mode === "prepared"), { 1: `:ek${k}`, 2: ":ak", 3: ":floor", 4: `:e${k}` });
        const decide = bind(loginDecide(mode === "prepared"), {
          1: `:ek${k}`,
          2: ":ak",
          3: ":floor",
          4: ":ten",
          5: ":hundred",
          6: "gen_random_uuid()",
          7: ":now",
          8: "null",
          9: ":ip",
          10: ":rid",
          11: "gen_random_uuid()",
          12: `:u${k}`,
          13: "md5(random()::text)",
          14: ":later",
          15: ":now",
        });
        const both = [`${oneLine(read)};`, `${oneLine(decide)};`];
        scripts.push(
          [...(isLoginStatement(kind) ? both.slice(kind === "login-read" ? 0 : 1, kind === "login-read" ? 1 : 2) : both), ""].join("\n"),
        );
        break;
      }
    }
  }
  return { scripts, vars };
}

export interface PgbenchResult {
  tps: number;
  latencyAvgMs: number;
  failed: number;
  transactions: number;
}

export async function runPgbench(opts: {
  url: string;
  kind: PgbenchScript;
  clients: number;
  threads: number;
  seconds: number;
  data: PgbenchData;
  dir: string;
  mode?: "simple" | "extended" | "prepared";
}): Promise<PgbenchResult & { script: string; mode: string }> {
  const mode = opts.mode ?? "extended";
  const { scripts, vars } = pgbenchScripts(opts.kind, opts.data, mode);
  const files = scripts.map((script, k) => {
    const file = join(opts.dir, `pgbench-${opts.kind}-${k}.sql`);
    writeFileSync(file, script);
    return file;
  });
  const bin = Bun.which("pgbench") ?? "/usr/lib/postgresql/15/bin/pgbench";
  const cmd = [
    bin,
    "-n",
    `-c${opts.clients}`,
    `-j${Math.min(opts.threads, opts.clients)}`,
    `-T${opts.seconds}`,
    `-M${mode}`,
    ...files.flatMap((f) => ["-f", f]),
    ...Object.entries(vars).flatMap(([k, v]) => ["-D", `${k}=${v}`]),
    opts.url,
  ];
  const r = await runCommand(cmd);
  const num = (re: RegExp) => Number(re.exec(r.stdout)?.[1] ?? NaN);
  const tps = num(/tps = ([\d.]+) \(without initial connection time\)/);
  if (r.code !== 0 || Number.isNaN(tps))
    throw new Error(`pgbench failed (exit ${r.code}):\n${r.stdout.slice(0, 2000)}\n${r.stderr.slice(0, 2000)}`);
  return {
    tps,
    latencyAvgMs: num(/latency average = ([\d.]+) ms/),
    failed: num(/number of failed transactions: (\d+)/) || 0,
    transactions: num(/number of transactions actually processed: (\d+)/),
    script: scripts[0],
    mode,
  };
}
