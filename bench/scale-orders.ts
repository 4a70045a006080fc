// npm run bench -- scale-orders [--orders=N] [--smoke] [--sessions=N] [--duration=S] [--rounds=N]
//                               [--samples=N] [--before=S] [--after=S] [--label=NAME]
//
// The service at 0 orders and at N orders in one run, on one Postgres + PgBouncer: the same
// customers, products and sessions in both databases (the empty one is a template copy made
// before the orders are generated), the same measurements in each:
//   orders.create through wrk (bench/wrk/create.lua), with what each order costs inside Postgres
//   (pg_stat_statements time, buffers dirtied, WAL bytes, and the WAL position's advance);
//   orders.list (heavy customer, admin unfiltered / status=pending / userId; page 1 and page 50
//   reached by nextCursor) and products.byId latencies, EXPLAIN (ANALYZE, BUFFERS) of the lists;
//   every job (maintenance, prune-sessions, backup-full, a 1 % status change, backup-incremental,
//   restore-verify) run as `npm run job` runs it, with its duration and size, and products.byId
//   p99 under light sequential load before, during and after each one.
// See bench/README.md, "scale-orders".

import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import type { Database } from "../src/db/client";
import { createPostgresDatabase } from "../src/db/client";
import { runMigrations } from "../src/db/migrate";
import * as schema from "../src/db/schema";
import { type OrderStatus, users } from "../src/db/schema";
import { hashPassword } from "../src/lib/passwords";
import { type Actor, listOrders } from "../src/services/orders";
import { BENCH_PASSWORD, type Customer, loadCustomers, loadProducts } from "./lib/load";
import { type BenchDatabase, enableStatementStats, HARNESS_MARK, openBenchDatabase } from "./lib/postgres";
import { freePort, runCommand, type Server, sleep, startServer } from "./lib/proc";
import { loadScaleCustomers, loadScaleOrders, loadScaleSessions, type ScaleShape, scaleShape } from "./lib/scale-data";
import { ensureWrk, runWrk } from "./lib/wrk";

const repoRoot = join(import.meta.dir, "..");
const log = (msg: string) => console.error(`[scale-orders ${new Date().toISOString().slice(11, 19)}] ${msg}`);

interface Options {
  orders: number;
  sessions?: number;
  smoke: boolean;
  seconds: number;
  rounds: number;
  samples: number;
  beforeSeconds: number;
  afterSeconds: number;
  connections: number;
  customers: number;
  products: number;
  label: string;
  /** Rehearse `partition-orders` on the N-order database at the end (bench/partition.ts --database). */
  partition: boolean;
}

function parseOptions(argv: string[]): Options {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    if (!arg.startsWith("--")) throw new Error(`scale-orders runs alone: unexpected "${arg}"`);
    const [k, v] = arg.slice(2).split("=", 2);
    flags.set(k, v ?? "true");
  }
  const known = ["orders", "sessions", "smoke", "duration", "rounds", "samples", "before", "after", "label", "partition", "help"];
  for (const k of flags.keys()) if (!known.includes(k)) throw new Error(`unknown option --${k} for scale-orders (see bench/README.md)`);
  if (flags.has("help")) {
    console.log(
      "npm run bench -- scale-orders [--orders=N] [--smoke] [--sessions=N] [--duration=S] [--rounds=N] [--samples=N] [--before=S] [--after=S] [--label=NAME] [--partition]",
    );
    process.exit(0);
  }
  const smoke = flags.has("smoke");
  const num = (k: string, fallback: number) => {
    const v = flags.get(k);
    if (v === undefined) return fallback;
    const n = Number(v.replace(/_/g, ""));
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${k} must be a number`);
    return Math.floor(n);
  };
  const orders = num("orders", smoke ? 100_000 : 10_000_000);
  return {
    orders,
    sessions: flags.has("sessions") ? num("sessions", 0) : undefined,
    smoke,
    seconds: num("duration", smoke ? 2 : 10),
    rounds: Math.max(1, num("rounds", smoke ? 1 : 3)),
    samples: Math.max(1, num("samples", smoke ? 20 : 200)),
    beforeSeconds: num("before", smoke ? 1 : 10),
    afterSeconds: num("after", smoke ? 3 : 60),
    connections: 32,
    customers: smoke ? 8 : 64,
    products: smoke ? 100 : 1000,
    partition: flags.has("partition"),
    label: (flags.get("label") ?? `scale-orders-${orders}`).replace(/[^A-Za-z0-9_-]/g, "-"),
  };
}

// --- statistics ---------------------------------------------------------------------------------

const sorted = (xs: number[]) => xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
const median = (xs: number[]) => {
  const s = sorted(xs);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const percentile = (xs: number[], p: number) => {
  const s = sorted(xs);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
const round = (x: number, digits = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : null);
const latency = (ms: number[]) => ({ n: ms.length, p50Ms: round(median(ms), 3), p99Ms: round(percentile(ms, 99), 3) });

// --- Postgres readings --------------------------------------------------------------------------

interface StatementStat {
  calls: number;
  ms: number;
  dirtied: number;
  walBytes: number;
  walFpi: number;
  query: string;
}

async function statementStats(sql: postgres.Sql): Promise<Map<string, StatementStat>> {
  const rows = await sql.unsafe<Record<string, string>[]>(
    `${HARNESS_MARK} select queryid::text as queryid, sum(calls)::text as calls, sum(total_exec_time)::text as ms,
            sum(shared_blks_dirtied)::text as dirtied, sum(wal_bytes)::text as wal_bytes, sum(wal_fpi)::text as wal_fpi,
            min(query) as query
       from pg_stat_statements s join pg_database d on d.oid = s.dbid
      where d.datname = current_database() and query not like '%bench-harness%'
      group by queryid`,
  );
  return new Map(
    rows.map((r) => [
      r.queryid,
      {
        calls: Number(r.calls),
        ms: Number(r.ms),
        dirtied: Number(r.dirtied),
        walBytes: Number(r.wal_bytes),
        walFpi: Number(r.wal_fpi),
        query: r.query,
      },
    ]),
  );
}

function statDelta(before: Map<string, StatementStat>, after: Map<string, StatementStat>): (StatementStat & { queryid: string })[] {
  const out: (StatementStat & { queryid: string })[] = [];
  for (const [queryid, a] of after) {
    const b = before.get(queryid);
    const calls = a.calls - (b?.calls ?? 0);
    if (calls <= 0) continue;
    out.push({
      queryid,
      calls,
      ms: a.ms - (b?.ms ?? 0),
      dirtied: a.dirtied - (b?.dirtied ?? 0),
      walBytes: a.walBytes - (b?.walBytes ?? 0),
      walFpi: a.walFpi - (b?.walFpi ?? 0),
      query: a.query.replace(/\s+/g, " ").trim(),
    });
  }
  return out.sort((x, y) => y.calls - x.calls);
}

async function walLsn(sql: postgres.Sql): Promise<string> {
  const [{ lsn }] = await sql.unsafe<{ lsn: string }[]>(`${HARNESS_MARK} select pg_current_wal_lsn()::text as lsn`);
  return lsn;
}

async function walSince(sql: postgres.Sql, lsn: string): Promise<number> {
  const [{ n }] = await sql.unsafe<{ n: string }[]>(`${HARNESS_MARK} select pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::text as n`, [
    lsn,
  ]);
  return Number(n);
}

// The statement one order sends (migration 0010's function; pg_stat_statements counts its inner
// statements' time, buffers and WAL under the call), one call per order (the stock is ample).
const ORDER_STATEMENT = /^select \* from orders_place\(/i;

function dirSize(dir: string): number {
  let total = 0;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e);
    const s = statSync(p);
    total += s.isDirectory() ? dirSize(p) : s.size;
  }
  return total;
}

// --- HTTP ---------------------------------------------------------------------------------------

type Page = { items: { id: string }[]; nextCursor: string | null };

async function getJson(url: string, token?: string): Promise<{ ms: number; status: number; data: unknown }> {
  const started = performance.now();
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : undefined);
  const body = (await res.json()) as { result?: { data?: unknown } };
  const ms = performance.now() - started;
  if (!res.ok) throw new Error(`GET ${url.slice(0, 160)} → ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
  return { ms, status: res.status, data: body.result?.data };
}

const enc = (x: unknown) => encodeURIComponent(JSON.stringify(x));

/** products.byId, one request after another with a pause: light load whose p99 shows what a job does to it. */
class Sampler {
  readonly samples: { at: number; ms: number; ok: boolean }[] = [];
  private running = false;
  private loop: Promise<void> | undefined;
  constructor(
    private url: string,
    private ids: string[],
    private pauseMs = 20,
  ) {}
  start() {
    this.running = true;
    this.loop = (async () => {
      let i = 0;
      while (this.running) {
        const id = this.ids[i++ % this.ids.length];
        const t0 = performance.now();
        let ok = true;
        try {
          const res = await fetch(`${this.url}/trpc/products.byId?input=${enc({ id })}`);
          await res.arrayBuffer();
          ok = res.ok;
        } catch {
          ok = false;
        }
        this.samples.push({ at: t0, ms: performance.now() - t0, ok });
        await sleep(this.pauseMs);
      }
    })();
  }
  async stop() {
    this.running = false;
    await this.loop;
  }
  window(from: number, to: number) {
    const xs = this.samples.filter((s) => s.at >= from && s.at < to);
    return { ...latency(xs.map((s) => s.ms)), errors: xs.filter((s) => !s.ok).length };
  }
}

// --- one phase: the service on one database -------------------------------------------------------

interface Run {
  opts: Options;
  db: BenchDatabase;
  dataDir: string;
  secret: string;
  heavy: Customer;
  admin: Customer;
  productIds: string[];
  warnings: string[];
  save: () => void;
}

interface PhaseDb {
  label: "empty" | "full";
  name: string;
  directUrl: string;
  pooledUrl: string;
}

const withDatabase = (url: string, name: string) => {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
};

/** Servers to stop when the run is stopped by a signal (Bun does not end its children then). */
const liveServices = new Set<Server>();

/** Fills `out` step by step (and saves the report after each), so a stopped run keeps what it measured. */
async function runPhase(run: Run, phase: PhaseDb, out: Partial<PhaseResult>): Promise<PhaseResult> {
  const { opts } = run;
  const startedAt = performance.now();
  const admin = postgres(phase.directUrl, { max: 2, prepare: false, onnotice: () => {}, connection: { statement_timeout: 0 } });
  const backupDir = join(run.dataDir, `backups-${phase.label}`);
  mkdirSync(backupDir, { recursive: true });
  const env = {
    DATABASE_URL: phase.pooledUrl,
    DATABASE_DIRECT_URL: phase.directUrl,
    DATABASE_PREPARE: "false",
    DATABASE_POOL_MAX: "10",
    JWT_SECRET: run.secret,
    HOST: "127.0.0.1",
    JOBS: "false",
    SEED: "false",
    LOG_LEVEL: "warn",
    NODE_ENV: "production",
    BACKUP_DIR: backupDir,
    DATA_DIR: join(run.dataDir, `data-${phase.label}`),
    PATH: process.env.PATH,
    HOME: process.env.HOME,
  };
  const port = await freePort();
  let service: Server | undefined;
  try {
    const [{ n: ordersAtStart }] = await admin.unsafe<{ n: number }[]>(`${HARNESS_MARK} select count(*)::int as n from orders`);
    Object.assign(out, { database: phase.name, ordersAtStart });
    log(`[${phase.label}] ${ordersAtStart.toLocaleString("en")} orders; starting the service on ${phase.name} through PgBouncer`);
    service = await startServer({
      name: `service-${phase.label}`,
      cmd: [process.execPath, "run", "src/server.ts"],
      env: { ...env, PORT: String(port) },
      port,
      healthPath: "/health",
      logFile: join(run.dataDir, `service-${phase.label}.log`),
      cwd: repoRoot,
      timeoutMs: 120_000,
    });
    liveServices.add(service);
    const create = await measureCreate(run, phase, service, admin);
    out.create = create;
    run.save();
    const lists = await measureLists(run, phase, service, admin);
    out.lists = lists;
    run.save();
    const byIdMs: number[] = [];
    for (let i = 0; i < opts.samples; i++)
      byIdMs.push((await getJson(`${service.url}/trpc/products.byId?input=${enc({ id: run.productIds[i % run.productIds.length] })}`)).ms);
    const byId = latency(byIdMs);
    log(`[${phase.label}] products.byId p50 ${byId.p50Ms} ms, p99 ${byId.p99Ms} ms (${byId.n} sequential)`);
    out.byId = byId;
    const jobs = await measureJobs(run, phase, service, admin, env, backupDir, out);
    const [sizes] = await admin.unsafe<Record<string, string>[]>(
      `${HARNESS_MARK} select pg_database_size(current_database())::text as database,
              pg_total_relation_size('orders')::text as orders, pg_total_relation_size('order_items')::text as order_items,
              pg_total_relation_size('users')::text as users, pg_total_relation_size('sessions')::text as sessions`,
    );
    let walDirBytes: number | null = null;
    try {
      const [{ n }] = await admin.unsafe<{ n: string }[]>(`${HARNESS_MARK} select sum(size)::text as n from pg_ls_waldir()`);
      walDirBytes = Number(n);
    } catch {
      // pg_ls_waldir needs superuser or pg_monitor
    }
    const disk = {
      databaseBytes: Number(sizes.database),
      ordersBytes: Number(sizes.orders),
      order_itemsBytes: Number(sizes.order_items),
      usersBytes: Number(sizes.users),
      sessionsBytes: Number(sizes.sessions),
      backupDirBytes: dirSize(backupDir),
      walDirBytes,
    };
    log(
      `[${phase.label}] disk: database ${mb(disk.databaseBytes)} MB, backups ${mb(disk.backupDirBytes)} MB${walDirBytes ? `, pg_wal ${mb(walDirBytes)} MB` : ""}`,
    );
    const result = {
      database: phase.name,
      ordersAtStart,
      create,
      lists,
      byId,
      jobs,
      disk,
      seconds: round((performance.now() - startedAt) / 1000, 1),
    };
    Object.assign(out, result);
    return result;
  } finally {
    await service?.stop();
    if (service) liveServices.delete(service);
    await admin.end({ timeout: 5 });
    // The backups were measured; at 10 M orders they are gigabytes.
    rmSync(backupDir, { recursive: true, force: true });
  }
}

const mb = (bytes: unknown) => round(Number(bytes) / 2 ** 20, 1);

interface CreateRound {
  rps: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  errors: number;
  requests: number;
  ordersPlaced: number;
  pgMsPerOrder: number | null;
  pgMsPerOrderAllStatements: number | null;
  walBytesPerOrder: number | null;
  walBytesPerOrderStatements: number | null;
  fullPageWritesPerOrder: number | null;
  buffersDirtiedPerOrder: number | null;
  statements: { query: string; calls: number; meanMs: number | null; dirtiedPerCall: number | null; walBytesPerCall: number | null }[];
}

async function measureCreate(run: Run, phase: PhaseDb, service: Server, admin: postgres.Sql) {
  const { opts } = run;
  const wrk = (seconds: number) =>
    runWrk({ url: service.url, script: "create.lua", connections: opts.connections, threads: 1, seconds, dataDir: run.dataDir });
  log(`[${phase.label}] orders.create: warm-up ${Math.max(1, Math.min(3, opts.seconds))} s`);
  await wrk(Math.max(1, Math.min(3, opts.seconds)));
  const rounds: CreateRound[] = [];
  for (let r = 1; r <= opts.rounds; r++) {
    const s0 = await statementStats(admin);
    const lsn = await walLsn(admin);
    const w = await wrk(opts.seconds);
    // Requests in flight when wrk stops finish now and are counted in this round.
    await sleep(Math.min(3000, Math.max(300, 2 * w.p99Ms)));
    const wal = await walSince(admin, lsn);
    const delta = statDelta(s0, await statementStats(admin));
    const orderStatements = delta.filter((d) => ORDER_STATEMENT.test(d.query));
    const orders = orderStatements.reduce((n, d) => n + d.calls, 0);
    const sum = (xs: typeof delta, k: "ms" | "dirtied" | "walBytes" | "walFpi") => xs.reduce((n, d) => n + d[k], 0);
    const per = (x: number) => x / Math.max(1, orders);
    const round_: CreateRound = {
      rps: round(w.rps, 1),
      p50Ms: round(w.p50Ms),
      p99Ms: round(w.p99Ms),
      errors: w.errors,
      requests: w.requests,
      ordersPlaced: orders,
      pgMsPerOrder: round(per(sum(orderStatements, "ms")), 4),
      pgMsPerOrderAllStatements: round(per(sum(delta, "ms")), 4),
      walBytesPerOrder: round(per(wal), 0),
      walBytesPerOrderStatements: round(per(sum(orderStatements, "walBytes")), 0),
      fullPageWritesPerOrder: round(per(sum(orderStatements, "walFpi")), 3),
      buffersDirtiedPerOrder: round(per(sum(orderStatements, "dirtied")), 3),
      statements: delta.slice(0, 8).map((d) => ({
        query: d.query.slice(0, 100),
        calls: d.calls,
        meanMs: round(d.ms / d.calls, 4),
        dirtiedPerCall: round(d.dirtied / d.calls, 3),
        walBytesPerCall: round(d.walBytes / d.calls, 0),
      })),
    };
    rounds.push(round_);
    log(
      `[${phase.label}] orders.create round ${r}/${opts.rounds}: ${round_.rps} req/s (p99 ${round_.p99Ms} ms, ${w.errors} errors), ${orders} orders; Postgres ${round_.pgMsPerOrder} ms/order, WAL ${round_.walBytesPerOrder} B/order (${round_.fullPageWritesPerOrder} FPI), ${round_.buffersDirtiedPerOrder} buffers dirtied/order`,
    );
    if (w.errors > 0) run.warnings.push(`[${phase.label}] orders.create: ${w.errors} errors in round ${r}`);
    if (orders === 0) run.warnings.push(`[${phase.label}] orders.create: no order placed in round ${r}`);
  }
  const med = (k: keyof CreateRound) => round(median(rounds.map((r) => Number(r[k]))), 4);
  return {
    connections: opts.connections,
    seconds: opts.seconds,
    rps: med("rps"),
    p50Ms: med("p50Ms"),
    p99Ms: med("p99Ms"),
    pgMsPerOrder: med("pgMsPerOrder"),
    pgMsPerOrderAllStatements: med("pgMsPerOrderAllStatements"),
    walBytesPerOrder: med("walBytesPerOrder"),
    walBytesPerOrderStatements: med("walBytesPerOrderStatements"),
    fullPageWritesPerOrder: med("fullPageWritesPerOrder"),
    buffersDirtiedPerOrder: med("buffersDirtiedPerOrder"),
    errors: rounds.reduce((n, r) => n + r.errors, 0),
    rounds,
  };
}

interface ListSeries {
  name: string;
  token: string;
  input: { limit: number; status?: OrderStatus; userId?: string };
  /** Who asks, for listOrders in EXPLAIN. */
  actor: Actor;
}

async function measureLists(run: Run, phase: PhaseDb, service: Server, admin: postgres.Sql) {
  const { opts } = run;
  const PAGE = 50;
  const customer: Actor = { id: run.heavy.userId, role: "customer" };
  const admin_: Actor = { id: run.admin.userId, role: "admin" };
  const series: ListSeries[] = [
    { name: "heavy customer", token: run.heavy.token, input: { limit: 20 }, actor: customer },
    { name: "admin, unfiltered", token: run.admin.token, input: { limit: 20 }, actor: admin_ },
    { name: "admin, status=pending", token: run.admin.token, input: { limit: 20, status: "pending" }, actor: admin_ },
    { name: "admin, userId", token: run.admin.token, input: { limit: 20, userId: run.heavy.userId }, actor: admin_ },
  ];
  const url = (input: Record<string, unknown>) => `${service.url}/trpc/orders.list?input=${enc(input)}`;
  // Page 50 the way a client reaches it: following nextCursor from page 1 (or the last page there is).
  const deep: { cursor: string | undefined; page: number; walkP50Ms: number | null }[] = [];
  for (const s of series) {
    let cursor: string | undefined;
    let page = 1;
    const walk: number[] = [];
    while (page < PAGE) {
      const r = await getJson(url({ ...s.input, ...(cursor ? { cursor } : {}) }), s.token);
      walk.push(r.ms);
      const next = (r.data as Page).nextCursor;
      if (!next) break;
      cursor = next;
      page++;
    }
    deep.push({ cursor, page, walkP50Ms: round(median(walk), 3) });
    if (page < PAGE) log(`[${phase.label}] orders.list ${s.name}: only ${page} page(s) of 20, the deepest is measured`);
  }
  // Interleaved (A B C … A B C …) so drift in the machine's load hits every series alike.
  const ms = series.map(() => ({ page1: [] as number[], deep: [] as number[] }));
  for (let i = 0; i < opts.samples; i++) {
    for (const [k, s] of series.entries()) {
      ms[k].page1.push((await getJson(url(s.input), s.token)).ms);
      ms[k].deep.push((await getJson(url({ ...s.input, ...(deep[k].cursor ? { cursor: deep[k].cursor } : {}) }), s.token)).ms);
    }
  }
  const out = [];
  for (const [k, s] of series.entries()) {
    const page1 = latency(ms[k].page1);
    const pageN = latency(ms[k].deep);
    const explain = {
      page1: await explainList(admin, s, undefined),
      pageN: await explainList(admin, s, deep[k].cursor),
    };
    log(
      `[${phase.label}] orders.list ${s.name}: page 1 p50 ${page1.p50Ms} / p99 ${page1.p99Ms} ms, page ${deep[k].page} p50 ${pageN.p50Ms} / p99 ${pageN.p99Ms} ms; in Postgres ${explain.page1.executionMs} / ${explain.pageN.executionMs} ms`,
    );
    for (const [page, e] of Object.entries(explain))
      if ("error" in e) run.warnings.push(`[${phase.label}] EXPLAIN of orders.list ${s.name} ${page}: ${e.error}`);
    out.push({
      series: s.name,
      input: { ...s.input, ...(s.input.userId ? { userId: "<heavy customer>" } : {}) },
      deepestPage: deep[k].page,
      page1,
      pageN,
      walkP50Ms: deep[k].walkP50Ms,
      explain,
    });
  }
  return out;
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of the statement the service sends for one list page: listOrders
 * itself (the service's code, in this process) builds it on a Drizzle client whose logger keeps
 * the text and the parameters, and that exact statement is explained.
 */
async function explainList(admin: postgres.Sql, s: ListSeries, cursor: string | undefined) {
  try {
    let captured: { query: string; params: unknown[] } | undefined;
    const db = drizzle(admin, {
      schema,
      logger: {
        logQuery(query, params) {
          if (/with "page" as/i.test(query)) captured = { query, params };
        },
      },
    }) as unknown as Database;
    await listOrders(db, s.actor, { ...s.input, ...(cursor ? { cursor } : {}) });
    if (!captured) return { error: "listOrders sent no list statement", plan: [], executionMs: null };
    const rows = await admin.unsafe<{ "QUERY PLAN": string }[]>(
      `${HARNESS_MARK} explain (analyze, buffers) ${captured.query}`,
      captured.params as postgres.ParameterOrJSON<never>[],
    );
    const plan = rows.map((r) => r["QUERY PLAN"]);
    return {
      statement: captured.query,
      plan,
      executionMs: Number(/Execution Time: ([\d.]+) ms/.exec(plan.join("\n"))?.[1] ?? NaN),
    };
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error), plan: [], executionMs: null };
  }
}

const JOB_PLAN = ["maintenance", "prune-sessions", "backup-full", "status change (1 % of orders)", "backup-incremental", "restore-verify"];

async function measureJobs(
  run: Run,
  phase: PhaseDb,
  service: Server,
  admin: postgres.Sql,
  env: Record<string, string | undefined>,
  backupDir: string,
  phaseOut: Partial<PhaseResult>,
) {
  const { opts } = run;
  const sampler = new Sampler(service.url, run.productIds);
  sampler.start();
  const out: JobRun[] = [];
  try {
    // The light load's own idle figure, before any job.
    const idleFrom = performance.now();
    await sleep(opts.beforeSeconds * 1000);
    const idle = sampler.window(idleFrom, performance.now());
    log(`[${phase.label}] light load (sequential products.byId): idle p99 ${idle.p99Ms} ms over ${idle.n} requests`);
    phaseOut.jobs = { idle, runs: out };
    for (const name of JOB_PLAN) {
      const beforeFrom = performance.now();
      await sleep(opts.beforeSeconds * 1000);
      const t0 = performance.now();
      const job = name.startsWith("status change") ? await changeStatuses(admin) : await runJob(name, env);
      const t1 = performance.now();
      await sleep(opts.afterSeconds * 1000);
      const t2 = performance.now();
      const load = {
        before: sampler.window(beforeFrom, t0),
        during: sampler.window(t0, t1),
        after: sampler.window(t1, t2),
      };
      const entry: JobRun = {
        job: name,
        seconds: round((t1 - t0) / 1000, 2),
        ok: job.ok,
        ...job.size,
        backupDirBytesAfter: dirSize(backupDir),
        byIdP99: load,
        report: job.report,
      };
      out.push(entry);
      run.save();
      log(
        `[${phase.label}] ${name}: ${entry.seconds} s, ${job.ok ? "ok" : "FAILED"}${job.sizeText ? `, ${job.sizeText}` : ""}; byId p99 before ${load.before.p99Ms} / during ${load.during.p99Ms} / after ${load.after.p99Ms} ms`,
      );
      if (!job.ok) run.warnings.push(`[${phase.label}] ${name} failed: ${JSON.stringify(job.report).slice(0, 400)}`);
      const errors = load.before.errors + load.during.errors + load.after.errors;
      if (errors) run.warnings.push(`[${phase.label}] ${name}: ${errors} products.byId errors under light load`);
    }
    return { idle, runs: out };
  } finally {
    await sampler.stop();
  }
}

interface JobRun {
  job: string;
  seconds: number | null;
  ok: boolean;
  backupBytes?: number;
  sessionsDeleted?: unknown;
  sessionBatches?: unknown;
  tableBytes?: unknown;
  ordersChanged?: number;
  backupDirBytesAfter: number;
  byIdP99: Record<"before" | "during" | "after", ReturnType<Sampler["window"]>>;
  report: Record<string, unknown>;
}

/** A job as `npm run job -- <name>` runs it: the CLI in its own process, on the phase's database. */
async function runJob(name: string, env: Record<string, string | undefined>) {
  const r = await runCommand([process.execPath, "run", "src/cli.ts", "job", name], { env, cwd: repoRoot });
  const line = r.stdout.trim().split("\n").filter(Boolean).at(-1) ?? "";
  let report: Record<string, unknown>;
  try {
    report = JSON.parse(line);
  } catch {
    report = { ok: false, stdout: r.stdout.slice(-400), stderr: r.stderr.slice(-800) };
  }
  const backup = report.backup as { bytes?: number; kind?: string } | undefined;
  const size: Record<string, unknown> = {};
  let sizeText = "";
  if (backup?.bytes !== undefined) {
    size.backupBytes = backup.bytes;
    sizeText = `${mb(backup.bytes)} MB ${backup.kind ?? ""}`.trim();
  }
  if (name === "prune-sessions") {
    size.sessionsDeleted = report.sessionsDeleted;
    size.sessionBatches = report.sessionBatches;
    sizeText = `${report.sessionsDeleted} sessions in ${report.sessionBatches} batches`;
  }
  if (name === "maintenance" && report.tableBytes) {
    size.tableBytes = report.tableBytes;
    sizeText = `tables ${mb(Object.values(report.tableBytes as Record<string, number>).reduce((a, b) => a + b, 0))} MB`;
  }
  // The full reports hold every table's row counts and checksums: kept, but trimmed.
  return { ok: r.code === 0 && report.ok === true, report: trimReport(report), size, sizeText };
}

function trimReport(report: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(report)) {
    const text = JSON.stringify(v) ?? "";
    out[k] = text.length <= 2000 ? v : `${text.slice(0, 2000)}… (${text.length} characters)`;
  }
  return out;
}

/** 1 % of the orders, drawn at random, move one status on (delivered → cancelled for a return). */
async function changeStatuses(admin: postgres.Sql) {
  const rows = await admin.unsafe<{ n: number }[]>(
    `${HARNESS_MARK} with changed as (
       update orders set status = case status when 'pending' then 'processing' when 'processing' then 'shipped'
                                              when 'shipped' then 'delivered' else 'cancelled' end,
                         updated_at = (now() at time zone 'utc')
        where id in (select id from orders tablesample bernoulli (1))
       returning 1)
     select count(*)::int as n from changed`,
  );
  const n = rows[0]?.n ?? 0;
  return { ok: true, report: { job: "status change", ordersChanged: n }, size: { ordersChanged: n }, sizeText: `${n} orders changed` };
}

// --- the report -----------------------------------------------------------------------------------

interface PhaseResult {
  database: string;
  ordersAtStart: number;
  create: Awaited<ReturnType<typeof measureCreate>>;
  lists: Awaited<ReturnType<typeof measureLists>>;
  byId: ReturnType<typeof latency>;
  jobs: { idle: ReturnType<Sampler["window"]>; runs: JobRun[] };
  disk: Record<string, number | null>;
  seconds: number | null;
}

const fmt = (x: unknown, digits = 0) => {
  const n = Number(x);
  return x === null || x === undefined || !Number.isFinite(n)
    ? "—"
    : n.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits });
};

function markdown(
  opts: Options,
  shape: ScaleShape,
  load: Record<string, unknown>,
  at0: Partial<PhaseResult> | undefined,
  atN: Partial<PhaseResult> | undefined,
  totals: Record<string, unknown>,
  warnings: string[],
  distribution?: Record<string, unknown>,
) {
  const L: string[] = [];
  const ratio = (a: unknown, b: unknown) => {
    const r = Number(b) / Number(a);
    return Number.isFinite(r) ? `${r.toFixed(2)}×` : "—";
  };
  const row = (name: string, a: unknown, b: unknown, digits = 2) =>
    L.push(`| ${name} | ${fmt(a, digits)} | ${fmt(b, digits)} | ${ratio(a, b)} |`);
  L.push("");
  L.push(
    `scale-orders: ${fmt(atN?.ordersAtStart ?? shape.orders)} orders, ${fmt(shape.customers + 1)} customers, ${fmt(shape.sessions)} sessions (${shape.expiredShare * 100} % expired); through PgBouncer (transaction mode), DATABASE_PREPARE=false, pool 10`,
  );
  L.push("");
  L.push(`| figure | at ${fmt(at0?.ordersAtStart ?? 0)} orders | at ${fmt(atN?.ordersAtStart)} orders | N / 0 |`);
  L.push("|---|---:|---:|---:|");
  const c0 = at0?.create;
  const cN = atN?.create;
  row(`orders.create req/s (wrk, ${opts.connections} conns, median of ${opts.rounds})`, c0?.rps, cN?.rps, 0);
  row("orders.create p50 ms", c0?.p50Ms, cN?.p50Ms);
  row("orders.create p99 ms", c0?.p99Ms, cN?.p99Ms);
  row("Postgres ms per order (order statements)", c0?.pgMsPerOrder, cN?.pgMsPerOrder, 3);
  row("Postgres ms per order (every statement)", c0?.pgMsPerOrderAllStatements, cN?.pgMsPerOrderAllStatements, 3);
  row("WAL bytes per order (pg_current_wal_lsn)", c0?.walBytesPerOrder, cN?.walBytesPerOrder, 0);
  row("WAL bytes per order (order statements)", c0?.walBytesPerOrderStatements, cN?.walBytesPerOrderStatements, 0);
  row("full-page writes per order", c0?.fullPageWritesPerOrder, cN?.fullPageWritesPerOrder);
  row("buffers dirtied per order", c0?.buffersDirtiedPerOrder, cN?.buffersDirtiedPerOrder);
  for (const [i, l0] of (at0?.lists ?? atN?.lists ?? []).entries()) {
    const lN = atN?.lists?.[i];
    const a = at0?.lists?.[i];
    L.push(
      `| orders.list ${l0.series}, page 1 p50 / p99 ms | ${fmt(a?.page1.p50Ms, 2)} / ${fmt(a?.page1.p99Ms, 2)} | ${fmt(lN?.page1.p50Ms, 2)} / ${fmt(lN?.page1.p99Ms, 2)} | ${ratio(a?.page1.p50Ms, lN?.page1.p50Ms)} |`,
    );
    L.push(
      `| orders.list ${l0.series}, page ${a?.deepestPage ?? "—"} / ${lN?.deepestPage ?? "—"} p50 / p99 ms | ${fmt(a?.pageN.p50Ms, 2)} / ${fmt(a?.pageN.p99Ms, 2)} | ${fmt(lN?.pageN.p50Ms, 2)} / ${fmt(lN?.pageN.p99Ms, 2)} | ${ratio(a?.pageN.p50Ms, lN?.pageN.p50Ms)} |`,
    );
    L.push(
      `| orders.list ${l0.series}, EXPLAIN ANALYZE ms page 1 / deep | ${fmt(a?.explain.page1.executionMs, 3)} / ${fmt(a?.explain.pageN.executionMs, 3)} | ${fmt(lN?.explain.page1.executionMs, 3)} / ${fmt(lN?.explain.pageN.executionMs, 3)} | |`,
    );
  }
  L.push(
    `| products.byId p50 / p99 ms (sequential) | ${fmt(at0?.byId?.p50Ms, 2)} / ${fmt(at0?.byId?.p99Ms, 2)} | ${fmt(atN?.byId?.p50Ms, 2)} / ${fmt(atN?.byId?.p99Ms, 2)} | ${ratio(at0?.byId?.p99Ms, atN?.byId?.p99Ms)} |`,
  );
  L.push(
    `| light-load byId p99 ms, idle | ${fmt(at0?.jobs?.idle.p99Ms, 2)} | ${fmt(atN?.jobs?.idle.p99Ms, 2)} | ${ratio(at0?.jobs?.idle.p99Ms, atN?.jobs?.idle.p99Ms)} |`,
  );
  for (const name of JOB_PLAN) {
    const a = at0?.jobs?.runs.find((j) => j.job === name);
    const b = atN?.jobs?.runs.find((j) => j.job === name);
    const okText = (j: typeof a) => (j ? (j.ok ? "" : " **FAILED**") : "");
    L.push(
      `| ${name}: seconds | ${fmt(a?.seconds, 1)}${okText(a)} | ${fmt(b?.seconds, 1)}${okText(b)} | ${ratio(a?.seconds, b?.seconds)} |`,
    );
    const size = (j: typeof a) => {
      if (!j) return "—";
      const x = j as unknown as Record<string, unknown>;
      if (x.backupBytes !== undefined) return `${fmt(mb(x.backupBytes), 1)} MB`;
      if (x.sessionsDeleted !== undefined) return `${fmt(x.sessionsDeleted)} sessions / ${fmt(x.sessionBatches)} batches`;
      if (x.ordersChanged !== undefined) return `${fmt(x.ordersChanged)} orders`;
      const tables = (x.report as { tables?: Record<string, number> } | undefined)?.tables;
      if (tables && typeof tables === "object")
        return `${fmt(Object.values(tables).reduce((n, v) => n + Number(v), 0))} rows restored and compared`;
      if (x.tableBytes)
        return `${fmt(mb(Object.values(x.tableBytes as Record<string, number>).reduce((s, v) => s + v, 0)), 1)} MB of tables`;
      return "";
    };
    L.push(`| ${name}: size | ${size(a)} | ${size(b)} | |`);
    const p = (j: typeof a) =>
      j ? `${fmt(j.byIdP99.before.p99Ms, 1)} / ${fmt(j.byIdP99.during.p99Ms, 1)} / ${fmt(j.byIdP99.after.p99Ms, 1)}` : "—";
    L.push(`| ${name}: byId p99 ms before / during / after | ${p(a)} | ${p(b)} | |`);
  }
  row("pg_database_size MB", mb(at0?.disk?.databaseBytes), mb(atN?.disk?.databaseBytes), 1);
  row(
    "orders + order_items MB",
    mb(Number(at0?.disk?.ordersBytes) + Number(at0?.disk?.order_itemsBytes)),
    mb(Number(atN?.disk?.ordersBytes) + Number(atN?.disk?.order_itemsBytes)),
    1,
  );
  row("backup dir MB (full + incremental)", mb(at0?.disk?.backupDirBytes), mb(atN?.disk?.backupDirBytes), 1);
  row("phase wall time s", at0?.seconds, atN?.seconds, 0);
  L.push("");
  L.push(
    `generation: ${Object.entries(load)
      .map(([k, v]) => `${k} ${typeof v === "number" ? fmt(v, 1) : String(v)}`)
      .join(", ")}`,
  );
  if (distribution)
    L.push(
      `data: ${Object.entries(distribution)
        .map(([k, v]) => `${k} ${typeof v === "number" ? fmt(v, 2) : String(v)}`)
        .join(", ")}`,
    );
  L.push(
    `run: ${Object.entries(totals)
      .map(([k, v]) => `${k} ${typeof v === "number" ? fmt(v, 1) : String(v)}`)
      .join(", ")}`,
  );
  for (const w of warnings) L.push(`warning: ${w}`);
  return L.join("\n");
}

// --- main -----------------------------------------------------------------------------------------

export async function runScaleOrders(argv: string[]): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions(argv);
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  }
  const shape = scaleShape(opts.orders, opts.sessions);
  const started = new Date();
  const t0 = performance.now();
  log(
    `${opts.orders.toLocaleString("en")} orders, ${shape.customers.toLocaleString("en")} customers, ${shape.sessions.toLocaleString("en")} sessions${opts.smoke ? " (smoke)" : ""}`,
  );
  await ensureWrk(log);
  const dataDir = mkdtempSync(join(tmpdir(), "bench-scale-orders-"));
  const db = await openBenchDatabase(log);
  const emptyName = `${db.name}_empty`;
  const serverUrl = withDatabase(db.directUrl, "postgres");
  const warnings: string[] = [];
  const resultsDir = join(repoRoot, "bench", "results");
  mkdirSync(resultsDir, { recursive: true });
  const stamp = started
    .toISOString()
    .replace(/:/g, "-")
    .replace(/\.\d+Z$/, "Z");
  const jsonFile = join(resultsDir, `${stamp}-scale-orders${opts.smoke ? "-smoke" : `-${opts.orders}`}.json`);
  const report: Record<string, unknown> = {
    scenario: "scale-orders",
    date: started.toISOString(),
    command: `npm run bench -- scale-orders ${argv.join(" ")}`.trim(),
    machine: { cores: availableParallelism(), cpu: cpus()[0]?.model, memoryGb: round(totalmem() / 2 ** 30, 1), bun: Bun.version },
    database: { ownServer: db.ownServer, via: "PgBouncer (transaction mode), DATABASE_PREPARE=false", poolMax: 10 },
    options: opts,
    shape,
    complete: false,
  };
  // Written after every step: a run stopped part-way still leaves what it measured.
  const save = () => writeFileSync(jsonFile, `${JSON.stringify({ ...report, warnings }, null, 2)}\n`);
  const load: Record<string, number | string> = {};
  let at0: Partial<PhaseResult> | undefined;
  let atN: Partial<PhaseResult> | undefined;
  let code = 0;
  let finished = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.on(signal, () => {
      warnings.push(`the run was stopped by ${signal}`);
      void finish().then(() => process.exit(signal === "SIGINT" ? 130 : 143));
    });
  const dropEmpty = async () => {
    const a = postgres(serverUrl, { max: 1, prepare: false, onnotice: () => {} });
    try {
      await a.unsafe(`drop database if exists ${emptyName} with (force)`);
    } finally {
      await a.end();
    }
  };
  try {
    // 1. Schema, the service's own accounts and catalog, then the bulk customers and sessions.
    const handle = await createPostgresDatabase({ url: db.directUrl, poolMax: 4, prepare: false });
    let customers: Customer[];
    let productIds: string[];
    const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
    const end = new Date(Date.now() - 60_000);
    try {
      const { applied } = await runMigrations(handle.db);
      log(`database ${db.name}: ${applied} migrations applied`);
      const admin = postgres(db.directUrl, { max: 1, prepare: false, onnotice: () => {} });
      const statsOn = await enableStatementStats(admin);
      await admin.end();
      if (!statsOn) warnings.push("pg_stat_statements is not available: Postgres time, WAL and EXPLAIN figures are missing");
      // Registered through the service: the heavy customer (first), the customers wrk orders as, the admin (last).
      customers = await loadCustomers(handle.db, secret, opts.customers + 1);
      const adminCustomer = customers.pop()!;
      await handle.db.update(users).set({ role: "admin" }).where(eq(users.id, adminCustomer.userId));
      customers.push(adminCustomer);
      productIds = await loadProducts(handle.db, opts.products, 100_000_000);
    } finally {
      await handle.close();
    }
    const adminCustomer = customers.at(-1)!;
    const orderers = customers.slice(0, -1);
    writeFileSync(join(dataDir, "tokens.txt"), `${orderers.map((c) => c.token).join("\n")}\n`);
    writeFileSync(join(dataDir, "order-product-ids.txt"), `${productIds.join("\n")}\n`);

    const loaderOptions = {
      max: 1,
      prepare: false,
      onnotice: () => {},
      // JIT would compile each chunk's statement anew (about 2 s each, more than the insert).
      // temp_buffers: the customer map (a temporary table of a million rows at 10 M orders) is
      // probed once per row; with the default 8 MB most probes go through the kernel.
      connection: { statement_timeout: 0, maintenance_work_mem: "1GB", jit: "off", temp_buffers: "512MB" },
    } as const;
    let loader = postgres(db.directUrl, loaderOptions);
    try {
      const passwordHash = await hashPassword(BENCH_PASSWORD);
      load.customersSeconds = round(await loadScaleCustomers(loader, shape, passwordHash, end), 1)!;
      load.sessionsSeconds = round(await loadScaleSessions(loader, shape, end), 1)!;
      await loader.unsafe(`${HARNESS_MARK} vacuum (analyze) users`);
      await loader.unsafe(`${HARNESS_MARK} vacuum (analyze) sessions`);
    } finally {
      await loader.end();
    }
    // 2. The empty database: a file copy of this one before any order (same ids, tokens, sessions).
    {
      const t = performance.now();
      const a = postgres(serverUrl, { max: 1, prepare: false, onnotice: () => {} });
      try {
        await a.unsafe(`create database ${emptyName} template ${db.name}`);
      } finally {
        await a.end();
      }
      load.emptyCopySeconds = round((performance.now() - t) / 1000, 1)!;
    }
    const run: Run = { opts, db, dataDir, secret, heavy: orderers[0], admin: adminCustomer, productIds, warnings, save };
    report.load = load;
    save();

    // 3. At 0 orders.
    log("== at 0 orders");
    report.at0 = at0 = {};
    await runPhase(
      run,
      {
        label: "empty",
        name: emptyName,
        directUrl: withDatabase(db.directUrl, emptyName),
        pooledUrl: withDatabase(db.pooledUrl, emptyName),
      },
      at0,
    );
    save();
    await dropEmpty();

    // 4. The orders, then at N.
    log(`== generating ${opts.orders.toLocaleString("en")} orders`);
    loader = postgres(db.directUrl, loaderOptions);
    try {
      const t = performance.now();
      const orders = await loadScaleOrders(loader, shape, { heavyUserId: run.heavy.userId, end, log });
      Object.assign(load, {
        orders: orders.orders,
        items: orders.items,
        ordersInsertSeconds: round(orders.insertSeconds, 1)!,
        ordersRebuildSeconds: round(orders.rebuildSeconds, 1)!,
        ordersVacuumSeconds: round(orders.vacuumSeconds, 1)!,
        ordersTotalSeconds: round((performance.now() - t) / 1000, 1)!,
      });
      report.rebuilt = orders.rebuilt;
      report.distribution = orders.distribution;
      log(`orders: ${JSON.stringify(orders.distribution)}`);
      try {
        await loader.unsafe(`${HARNESS_MARK} checkpoint`);
      } catch {
        // CHECKPOINT needs superuser (or pg_checkpoint): without it the first run may pay for one.
      }
    } finally {
      await loader.end();
    }
    save();
    log(`== at ${opts.orders.toLocaleString("en")} orders`);
    report.atN = atN = {};
    await runPhase(run, { label: "full", name: db.name, directUrl: db.directUrl, pooledUrl: db.pooledUrl }, atN);
    save();
    // 5. The partitioning rehearsal on the N-order database (last: it changes the tables' shape).
    if (opts.partition) report.partition = await rehearsePartitioning(db, opts, dataDir, warnings);
    report.complete = true;
  } catch (error) {
    code = 1;
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    warnings.push(`the run stopped: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    await finish();
  }
  if (warnings.length && opts.smoke) code = 1;
  return code;

  /** The report (also when the run is stopped by a signal: a deadline), then the databases go. */
  async function finish() {
    if (finished) return;
    finished = true;
    for (const s of liveServices) await s.stop().catch(() => {});
    const totals = { wallSeconds: round((performance.now() - t0) / 1000, 0)!, logs: dataDir };
    report.totals = totals;
    const partition = report.partition as { markdown?: string } | undefined;
    const text =
      markdown(opts, shape, load, at0, atN, totals, warnings, report.distribution as Record<string, unknown> | undefined) +
      (partition?.markdown ? `\n\n${partition.markdown.replace(/^# /m, "## ").replace(/^## (?!Partitioning)/gm, "### ")}\n` : "");
    console.log(text);
    save();
    log(`results written to ${jsonFile}`);
    if (!opts.smoke) {
      const md = join(resultsDir, `${started.toISOString().slice(0, 16).replace(":", "")}Z-${opts.label}.md`);
      writeFileSync(
        md,
        `# \`${report.command}\`\n\n${started.toISOString()}, ${totals.wallSeconds} s${report.complete ? "" : " (INCOMPLETE: the run stopped before the end)"}; JSON: \`${jsonFile.slice(resultsDir.length + 1)}\`\n${text}\n`,
      );
      log(`report written to ${md}`);
    }
    await dropEmpty().catch(() => {});
    await db.teardown();
  }
}

/**
 * `npm run bench:partition -- --database=<the N-order database>` in its own process: the
 * migration on this data while a client keeps ordering, then both shapes sampled interleaved.
 */
async function rehearsePartitioning(
  db: { name: string; pooledUrl: string; directUrl: string },
  opts: Options,
  dataDir: string,
  warnings: string[],
) {
  log(`== partitioning rehearsal on ${db.name}`);
  const t = performance.now();
  const logFile = join(dataDir, "partition.log");
  const proc = Bun.spawn([process.execPath, "bench/partition.ts", `--database=${db.name}`, `--samples=${opts.samples}`], {
    cwd: repoRoot,
    env: { ...process.env, BENCH_DATABASE_URL: db.pooledUrl, BENCH_DIRECT_DATABASE_URL: db.directUrl },
    stdout: "pipe",
    stderr: Bun.file(logFile),
  });
  const markdownText = await new Response(proc.stdout).text();
  const exitCode = await proc.exited;
  const seconds = round((performance.now() - t) / 1000, 1);
  if (exitCode !== 0) warnings.push(`the partitioning rehearsal failed (exit ${exitCode}); its log: ${logFile}`);
  log(`partitioning rehearsal: ${seconds} s, exit ${exitCode}`);
  return { seconds, ok: exitCode === 0, markdown: markdownText.trim() };
}
