// pgbench with custom scripts built from the baseline's statement texts, so the third column of
// every table runs the same SQL as the service and the baseline, with no HTTP and no JS at all.
// Each bound parameter becomes an expression: constants stay constants, and the ids a client
// would send are drawn at random through two small key tables (bench_products, bench_sessions,
// filled by the harness), an index probe inside the same statement, not an extra round trip.
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { listProductsStatement, MAX_TOTAL, ORDER_CREATE, PRODUCT_BY_ID, SESSION_LOOKUP } from "../baseline-sql";
import { runCommand } from "./proc";


/** Replaces $1…$n by the given SQL expressions. */
function bind(text: string, exprs: Record<number, string>): string {
  return text.replace(/\$(\d+)/g, (_, n: string) => {
    const e = exprs[Number(n)];
    if (e === undefined) throw new Error(`no expression for $${n}`);
    return e;
  });
}

const oneLine = (s: string) => s.replace(/\s+/g, " ").trim();

const sessionLookup = bind(SESSION_LOOKUP, {
  1: "(select session_id from bench_sessions where n = :s)",
  2: "(select user_id from bench_sessions where n = :s)",
  3: "(now() at time zone 'utc')",
  4: "1",
});

export type PgbenchScript = "session" | "list" | "byId" | "order";

export function pgbenchScript(kind: PgbenchScript): string {
  switch (kind) {
    case "session":
      return `\\set s random(1, :nsessions)\n${oneLine(sessionLookup)};\n`;
    case "list":
      return `${oneLine(bind(listProductsStatement({ sort: "newest", limit: 20 }).text, { 1: "21" }))};\n`;
    case "byId":
      return `\\set p random(1, :nproducts)\n${oneLine(bind(PRODUCT_BY_ID, { 1: "(select id from bench_products where n = :p)", 2: "1" }))};\n`;
    case "order": {
      // 1 to 3 distinct lines (a repeated draw collapses, like the service merges lines), quantity 1 to 3.
      const picked = "(:a, :b, :c)";
      const order = bind(ORDER_CREATE, {
        1: `(select array_agg(id order by id) from bench_products where n in ${picked})`,
        2: `(select array_agg(:q::int) from bench_products where n in ${picked})`,
        3: `(select count(*) from bench_products where n in ${picked})`,
        4: `'${MAX_TOTAL}'`,
        5: "gen_random_uuid()",
        6: "(select user_id from bench_sessions where n = :s)",
        7: `'${MAX_TOTAL}'`,
      });
      return [
        "\\set s random(1, :nsessions)",
        "\\set lines random(1, 3)",
        "\\set q random(1, 3)",
        "\\set a random(1, :nproducts)",
        "\\set b case when :lines >= 2 then random(1, :nproducts) else :a end",
        "\\set c case when :lines >= 3 then random(1, :nproducts) else :a end",
        // What the service sends per order: the session check, then the one order statement.
        `${oneLine(sessionLookup)};`,
        `${oneLine(order)};`,
        "",
      ].join("\n");
    }
  }
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
  vars: Record<string, number>;
  dir: string;
  mode?: "simple" | "extended" | "prepared";
}): Promise<PgbenchResult & { script: string }> {
  const script = pgbenchScript(opts.kind);
  const file = join(opts.dir, `pgbench-${opts.kind}.sql`);
  writeFileSync(file, script);
  const bin = Bun.which("pgbench") ?? "/usr/lib/postgresql/15/bin/pgbench";
  const cmd = [
    bin,
    "-n",
    `-c${opts.clients}`,
    `-j${Math.min(opts.threads, opts.clients)}`,
    `-T${opts.seconds}`,
    `-M${opts.mode ?? "extended"}`,
    "-f",
    file,
    ...Object.entries(opts.vars).flatMap(([k, v]) => ["-D", `${k}=${v}`]),
    opts.url,
  ];
  const r = await runCommand(cmd);
  const num = (re: RegExp) => Number(re.exec(r.stdout)?.[1] ?? NaN);
  const tps = num(/tps = ([\d.]+) \(without initial connection time\)/);
  if (r.code !== 0 || Number.isNaN(tps)) throw new Error(`pgbench failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return {
    tps,
    latencyAvgMs: num(/latency average = ([\d.]+) ms/),
    failed: num(/number of failed transactions: (\d+)/) || 0,
    transactions: num(/number of transactions actually processed: (\d+)/),
    script,
  };
}
