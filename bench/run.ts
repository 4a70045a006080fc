// npm run bench -- [scenario…] [--smoke] [--duration=S] [--rounds=N] [--scale-rows=N] [--no-pgbench] [--mode=pooled|direct]
// npm run bench -- scale-orders [--orders=N] [--smoke] …   (its own run: bench/scale-orders.ts)
//
// Measures the service against two raw baselines (bench/baseline.ts: the service's own SQL, and
// the plainest correct SQL; same checks, no framework) and pgbench (the service's statements with
// no HTTP and no JS), interleaved in one run on one database.
// See bench/README.md for how to read the table.

import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { hash as argonHash, verify as argonVerify } from "@node-rs/argon2";
import postgres from "postgres";
import { createPostgresDatabase, type DatabaseHandle } from "../src/db/client";
import { runMigrations } from "../src/db/migrate";
import { PASSWORD_PARAMS } from "../src/lib/password-policy";
import { setStock } from "../src/services/inventory";
import { createProduct } from "../src/services/products";
import { listProductsStatement, ORDER_PLACE, orderPlaceParams } from "./baseline-sql";
import { BENCH_PASSWORD, type Customer, loadCustomers, loadProducts, loadScaleCatalog, writeKeyTables } from "./lib/load";
import { LOGIN_STATEMENTS, type LoginStatement, type PgbenchData, type PgbenchResult, type PgbenchScript, runPgbench } from "./lib/pgbench";
import {
  type BenchDatabase,
  diffStatements,
  enableStatementStats,
  HARNESS_MARK,
  openBenchDatabase,
  type StatementDelta,
  snapshotStatements,
} from "./lib/postgres";
import { cpuTicks, freePort, memoryOf, type Server, sleep, startServer, TICK_US } from "./lib/proc";
import { ensureWrk, runWrk, type WrkResult } from "./lib/wrk";

// --- options ------------------------------------------------------------------------------------

const ALL_SCENARIOS = ["static", "login", "list", "byId", "create", "contended", "scale"] as const;
type Scenario = (typeof ALL_SCENARIOS)[number];

interface Options {
  scenarios: Scenario[];
  smoke: boolean;
  seconds: number;
  warmupSeconds: number;
  rounds: number;
  scaleRows: number;
  samples: number;
  customers: number;
  products: number;
  pgbench: boolean;
  /** Run the service under Bun's sampling CPU profiler (written as markdown when it stops). */
  profile: boolean;
  wrkThreads: number;
  poolMax: number;
  /** What the service runs: src/server.ts, or a bundle of it (`npm run build`, dist/server.js). */
  serviceEntry: string;
  /** pooled: through PgBouncer with DATABASE_PREPARE=false; direct: straight to Postgres with DATABASE_PREPARE=true. */
  mode: "pooled" | "direct";
  /** Names the markdown copy of the report: bench/results/<date>-<label>.md. */
  label: string;
  /** Run the service from another checkout (a before/after comparison with this harness). */
  serviceDir?: string;
}

function parseOptions(argv: string[]): Options {
  const flags = new Map<string, string>();
  const names: string[] = [];
  for (const arg of argv) {
    if (arg.startsWith("--")) {
      const [k, v] = arg.slice(2).split("=", 2);
      flags.set(k, v ?? "true");
    } else names.push(arg);
  }
  const known = new Set([
    "smoke",
    "duration",
    "rounds",
    "scale-rows",
    "no-pgbench",
    "samples",
    "warmup",
    "profile",
    "service",
    "help",
    "mode",
    "label",
    "service-dir",
  ]);
  for (const k of flags.keys()) if (!known.has(k)) fail(`unknown option --${k} (see bench/README.md)`);
  if (flags.has("help")) {
    console.log(
      `npm run bench -- [${ALL_SCENARIOS.join("|")}…] [--smoke] [--duration=S] [--rounds=N] [--scale-rows=N] [--samples=N] [--warmup=S] [--no-pgbench] [--profile] [--service=FILE]`,
    );
    process.exit(0);
  }
  for (const n of names)
    if (!(ALL_SCENARIOS as readonly string[]).includes(n))
      fail(`unknown scenario "${n}": use ${ALL_SCENARIOS.join(", ")} (or scale-orders, which runs alone)`);
  const smoke = flags.has("smoke");
  const int = (k: string, fallback: number) => {
    const v = flags.get(k);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) fail(`--${k} must be a number`);
    return n;
  };
  const picked = names.length ? ALL_SCENARIOS.filter((s) => names.includes(s)) : [...ALL_SCENARIOS];
  return {
    scenarios: picked,
    smoke,
    seconds: int("duration", smoke ? 2 : 10),
    warmupSeconds: int("warmup", smoke ? 0 : 3),
    rounds: int("rounds", smoke ? 1 : 3),
    scaleRows: int("scale-rows", smoke ? 20_000 : 1_000_000),
    samples: int("samples", smoke ? 20 : 200),
    customers: smoke ? 16 : 64,
    products: smoke ? 100 : 1000,
    pgbench: !flags.has("no-pgbench"),
    profile: flags.has("profile"),
    wrkThreads: 1,
    poolMax: 10,
    serviceEntry: flags.get("service") ?? "src/server.ts",
    mode:
      flags.get("mode") === "direct"
        ? "direct"
        : flags.get("mode") === undefined || flags.get("mode") === "pooled"
          ? "pooled"
          : fail("--mode must be pooled or direct"),
    label: (flags.get("label") ?? (names.length ? names.join("-") : "all")).replace(/[^A-Za-z0-9_-]/g, "-"),
    serviceDir: flags.get("service-dir"),
  };
}

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(2);
}

/** Layers of the service that can be switched off from the shell, to measure what each costs. */
const SHELL_KNOBS = ["TRPC_FAST_PATH", "LOG_LEVEL", "METRICS", "LOG_SLOW_QUERY_MS"];
/** Those of SHELL_KNOBS set in the bench's own environment, handed on to the service as they are. */
const shellKnobs: Record<string, string> = Object.fromEntries(
  SHELL_KNOBS.flatMap((n) => (process.env[n] ? [[n, process.env[n] as string]] : [])),
);
const log = (msg: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);

// --- statistics ---------------------------------------------------------------------------------

const median = (xs: number[]) => {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
const round = (x: number, digits = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : null);

// --- the run's state ----------------------------------------------------------------------------

interface Ctx {
  opts: Options;
  db: BenchDatabase;
  handle: DatabaseHandle;
  admin: postgres.Sql;
  statsOn: boolean;
  dataDir: string;
  service: Server;
  baseline: Server;
  plain: Server;
  customers: Customer[];
  productIds: string[];
  warnings: string[];
  /** Printed with the report, but never fail a smoke run. */
  notes: string[];
}

interface SideRun extends WrkResult {
  cpuUsPerRequest: number;
  /** Postgres (all backends) and PgBouncer CPU per request, when the harness runs them. */
  postgresCpuUsPerRequest?: number;
  pgbouncerCpuUsPerRequest?: number;
  statements?: StatementDelta[];
  ordersCreated?: number;
}

interface SideSummary {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  requests: number;
  cpuUsPerRequest: number;
  wrkCpuUsPerRequest: number;
  postgresCpuUsPerRequest: number | null;
  pgbouncerCpuUsPerRequest: number | null;
  rounds: { rps: number; p50Ms: number; p99Ms: number; errors: number }[];
}

function summarise(runs: SideRun[]): SideSummary {
  return {
    rps: median(runs.map((r) => r.rps)),
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    requests: runs.reduce((n, r) => n + r.requests, 0),
    cpuUsPerRequest: median(runs.map((r) => r.cpuUsPerRequest)),
    wrkCpuUsPerRequest: median(runs.map((r) => r.wrkCpuUsPerRequest)),
    postgresCpuUsPerRequest: round(median(runs.map((r) => r.postgresCpuUsPerRequest ?? NaN)), 1),
    pgbouncerCpuUsPerRequest: round(median(runs.map((r) => r.pgbouncerCpuUsPerRequest ?? NaN)), 1),
    rounds: runs.map((r) => ({ rps: round(r.rps, 1)!, p50Ms: round(r.p50Ms)!, p99Ms: round(r.p99Ms)!, errors: r.errors })),
  };
}

interface HttpScenarioResult {
  kind: "http";
  name: string;
  connections: number;
  service: SideSummary;
  baseline: SideSummary;
  /** The plainest-correct-SQL baseline (BASELINE_SQL=plain). */
  plain: SideSummary;
  ratio: number;
  ratioPlain: number;
  /** Statements per request of each side (pg_stat_statements calls / requests, last round). */
  statementsPerRequestBySide?: { service: number; baseline: number; plain: number };
  pgbench?: PgbenchResult & { kind: PgbenchScript; clients: number };
  extraPgbench?: (PgbenchResult & { kind: PgbenchScript; clients: number; mode?: string })[];
  /** login: each of its statements alone under pgbench, with Postgres CPU per statement. */
  loginStatements?: { kind: LoginStatement; mode: string; tps: number; failed: number; postgresUs: number | null }[];
  statementsPerRequest?: {
    service: number;
    baseline: number;
    sameStatements: boolean;
    service_statements: StatementDelta[];
    baseline_statements: StatementDelta[];
  };
  roundTripsPerOrder?: { service: number; baseline: number; plain: number };
  hashCeiling?: Awaited<ReturnType<typeof measureHashCeiling>>;
  /** create: the order statement's plan for one 3-line order (run in a transaction that is rolled back). */
  explain?: { plan: string[]; executionMs: number };
  /** Mean time inside Postgres per statement, service run (pg_stat_statements). */
  statementMeanMs?: { query: string; meanMs: number; callsPerRequest: number }[];
  target: { description: string; value: number; threshold: number; met: boolean };
}

const results: Record<string, unknown> = {};
const targets: { name: string; value: number | null; threshold: string; met: boolean }[] = [];
let exitCode = 0;

// --- HTTP scenarios -------------------------------------------------------------------------------

const HTTP = {
  list: { script: "list.lua", connections: 64, pgbench: "list" as PgbenchScript, targetRatio: 0.8 },
  byId: { script: "by-id.lua", connections: 64, pgbench: "byId" as PgbenchScript, targetRatio: 0.8 },
  create: { script: "create.lua", connections: 32, pgbench: "order" as PgbenchScript, targetRatio: 0.8 },
  login: { script: "login.lua", connections: 16, pgbench: "login" as PgbenchScript, targetRatio: 0.9 },
} as const;
type HttpName = keyof typeof HTTP;

async function countOrders(ctx: Ctx): Promise<number> {
  const [row] = await ctx.admin.unsafe<{ n: string }[]>(`${HARNESS_MARK} select count(*)::text as n from orders`);
  return Number(row.n);
}

async function measureSide(ctx: Ctx, server: Server, name: HttpName, seconds: number): Promise<SideRun> {
  const spec = HTTP[name];
  const before = ctx.statsOn ? await snapshotStatements(ctx.admin) : undefined;
  const ordersBefore = name === "create" ? await countOrders(ctx) : 0;
  const ticks0 = cpuTicks(server.proc.pid) ?? NaN;
  const db0 = ctx.db.serverCpuTicks();
  const r = await runWrk({
    url: server.url,
    script: spec.script,
    connections: spec.connections,
    threads: ctx.opts.wrkThreads,
    seconds,
    dataDir: ctx.dataDir,
  });
  // Requests still in flight when wrk stops finish now, and are counted in this run, not the next.
  await sleep(Math.min(3000, Math.max(200, 2 * r.p99Ms)));
  if (server.proc.exitCode !== null || server.proc.signalCode !== null)
    throw new Error(`${server.name} died during ${name}: see ${server.logFile}`);
  const ticks1 = cpuTicks(server.proc.pid) ?? NaN;
  const db1 = ctx.db.serverCpuTicks();
  const per = (ticks: number) => (ticks * TICK_US) / Math.max(1, r.requests);
  const out: SideRun = { ...r, cpuUsPerRequest: per(ticks1 - ticks0) };
  if (db0 && db1) {
    out.postgresCpuUsPerRequest = per(db1.postgres - db0.postgres);
    out.pgbouncerCpuUsPerRequest = per(db1.pgbouncer - db0.pgbouncer);
  }
  if (before) out.statements = diffStatements(before, await snapshotStatements(ctx.admin));
  if (name === "create") out.ordersCreated = (await countOrders(ctx)) - ordersBefore;
  return out;
}

/** Statements per request of one run, and whether two runs sent the same statements (by query id). */
function compareStatements(service: SideRun, baseline: SideRun) {
  const perRequest = (r: SideRun) => (r.statements ?? []).reduce((n, s) => n + s.calls, 0) / Math.max(1, r.requests);
  // Statements sent on at least 5 % of requests; rarer ones are pool housekeeping.
  const main = (r: SideRun) => new Set((r.statements ?? []).filter((s) => s.calls >= 0.05 * r.requests).map((s) => s.queryid));
  const a = main(service);
  const b = main(baseline);
  const same = a.size === b.size && [...a].every((id) => b.has(id));
  return {
    service: round(perRequest(service), 3)!,
    baseline: round(perRequest(baseline), 3)!,
    sameStatements: same,
    service_statements: (service.statements ?? []).slice(0, 12),
    baseline_statements: (baseline.statements ?? []).slice(0, 12),
  };
}

async function measureHashCeiling(samples: number) {
  const h = await argonHash("bench hash ceiling", PASSWORD_PARAMS);
  await argonVerify(h, "bench hash ceiling"); // warm
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  for (let i = 0; i < samples; i++) await argonVerify(h, "bench hash ceiling");
  const msPerHash = (performance.now() - started) / samples;
  const cpu = process.cpuUsage(cpu0);
  const cores = availableParallelism();
  // The same library with `cores` verifies always in flight: what this process can really reach
  // (it shows whether the native thread pool uses every core).
  const parallelStarted = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: cores }, async () => {
      while (next++ < samples * cores) await argonVerify(h, "bench hash ceiling");
    }),
  );
  const parallelPerSecond = (samples * cores * 1000) / (performance.now() - parallelStarted);
  return {
    msPerHash: round(msPerHash, 2)!,
    cpuMsPerHash: round((cpu.user + cpu.system) / 1000 / samples, 2)!,
    cores,
    ceilingPerSecond: round((cores * 1000) / msPerHash, 1)!,
    parallelPerSecond: round(parallelPerSecond, 1)!,
  };
}

async function runHttpScenario(ctx: Ctx, name: HttpName): Promise<HttpScenarioResult> {
  const spec = HTTP[name];
  const { opts } = ctx;
  const hashCeiling = name === "login" ? await measureHashCeiling(opts.smoke ? 5 : 30) : undefined;
  if (hashCeiling)
    log(
      `argon2id verify at m=${PASSWORD_PARAMS.memoryCost},t=${PASSWORD_PARAMS.timeCost},p=${PASSWORD_PARAMS.parallelism}: ${hashCeiling.msPerHash} ms → ceiling ${hashCeiling.ceilingPerSecond}/s on ${hashCeiling.cores} cores (${hashCeiling.cpuMsPerHash} ms CPU per verify; ${hashCeiling.parallelPerSecond}/s measured with ${hashCeiling.cores} in flight)`,
    );
  if (opts.warmupSeconds > 0) {
    log(`${name}: warm-up ${opts.warmupSeconds}s each`);
    await measureSide(ctx, ctx.service, name, opts.warmupSeconds);
    await measureSide(ctx, ctx.baseline, name, opts.warmupSeconds);
    await measureSide(ctx, ctx.plain, name, opts.warmupSeconds);
  }
  const service: SideRun[] = [];
  const baseline: SideRun[] = [];
  const plain: SideRun[] = [];
  // A login costs tens of milliseconds: a one-second smoke run may not complete any.
  const seconds = name === "login" ? Math.max(3, opts.seconds) : opts.seconds;
  for (let r = 1; r <= opts.rounds; r++) {
    const s = await measureSide(ctx, ctx.service, name, seconds);
    service.push(s);
    const b = await measureSide(ctx, ctx.baseline, name, seconds);
    baseline.push(b);
    const p = await measureSide(ctx, ctx.plain, name, seconds);
    plain.push(p);
    const pg = (x: SideRun) => (x.postgresCpuUsPerRequest === undefined ? "" : `, Postgres ${x.postgresCpuUsPerRequest.toFixed(0)} µs/req`);
    log(
      `${name} round ${r}/${opts.rounds}: service ${s.rps.toFixed(0)} req/s (p99 ${s.p99Ms.toFixed(1)} ms, ${s.errors} errors${pg(s)}), same-SQL baseline ${b.rps.toFixed(0)} req/s (p99 ${b.p99Ms.toFixed(1)} ms, ${b.errors} errors${pg(b)}), plain-SQL baseline ${p.rps.toFixed(0)} req/s (p99 ${p.p99Ms.toFixed(1)} ms, ${p.errors} errors${pg(p)}); service/plain ${(s.rps / p.rps).toFixed(2)}`,
    );
  }
  const sSum = summarise(service);
  const bSum = summarise(baseline);
  const pSum = summarise(plain);
  const result: HttpScenarioResult = {
    kind: "http",
    name,
    connections: spec.connections,
    service: sSum,
    baseline: bSum,
    plain: pSum,
    ratio: sSum.rps / bSum.rps,
    ratioPlain: sSum.rps / pSum.rps,
    hashCeiling,
    target: { description: "", value: NaN, threshold: spec.targetRatio, met: false },
  };
  if (ctx.statsOn) {
    const last = service.length - 1;
    result.statementsPerRequest = compareStatements(service[last], baseline[last]);
    const perRequest = (r: SideRun) => round((r.statements ?? []).reduce((n, x) => n + x.calls, 0) / Math.max(1, r.requests), 2)!;
    result.statementsPerRequestBySide = {
      service: perRequest(service[last]),
      baseline: perRequest(baseline[last]),
      plain: perRequest(plain[last]),
    };
    if (!result.statementsPerRequest.sameStatements) {
      const msg = `${name}: the service and the baseline did not send the same statements (see statementsPerRequest in the JSON): update bench/baseline-sql.ts`;
      ctx.warnings.push(msg);
      log(`WARNING ${msg}`);
    }
    if (name === "create") {
      const perOrder = (runs: SideRun[]) => {
        const calls = runs.reduce((n, r) => n + (r.statements ?? []).reduce((m, s) => m + s.calls, 0), 0);
        const orders = runs.reduce((n, r) => n + (r.ordersCreated ?? 0), 0);
        return round(calls / Math.max(1, orders), 2)!;
      };
      result.roundTripsPerOrder = { service: perOrder(service), baseline: perOrder(baseline), plain: perOrder(plain) };
    }
  }
  if (name === "create") {
    result.explain = await explainOrder(ctx);
    log(`create: EXPLAIN ANALYZE of one order of one line: ${result.explain.executionMs} ms inside Postgres`);
  }
  if (ctx.statsOn) {
    const last = service[service.length - 1];
    result.statementMeanMs = (last.statements ?? [])
      .filter((x) => x.calls >= 0.05 * last.requests)
      .map((x) => ({ query: x.query.slice(0, 120), meanMs: x.meanMs, callsPerRequest: round(x.calls / Math.max(1, last.requests), 2)! }));
    for (const x of result.statementMeanMs)
      log(`${name}: ${x.callsPerRequest}× per request, ${x.meanMs} ms mean in Postgres: ${x.query.slice(0, 70)}…`);
  }
  if (opts.pgbench && spec.pgbench) {
    const data = await pgbenchData(ctx);
    const run = (kind: PgbenchScript, mode: "extended" | "prepared") =>
      runPgbench({
        url: mode === "extended" && ctx.opts.mode === "pooled" ? ctx.db.pooledUrl : ctx.db.directUrl,
        kind,
        clients: opts.poolMax,
        threads: 2,
        seconds: opts.seconds,
        data,
        dir: ctx.dataDir,
        mode,
      });
    // The run's own mode first: unnamed statements through PgBouncer, or prepared straight to Postgres.
    const own = ctx.opts.mode === "pooled" ? "extended" : "prepared";
    const pg = await run(spec.pgbench, own);
    result.pgbench = { ...pg, kind: spec.pgbench, clients: opts.poolMax };
    log(`${name}: pgbench ${spec.pgbench} (${pg.mode}) ${pg.tps.toFixed(0)} tps (avg ${pg.latencyAvgMs} ms, ${pg.failed} failed)`);
    // Each statement shape in both modes: the scenario's own shape in the other mode, and the
    // shape it is compared with (the plainest transaction for create, the plain lookup and insert for
    // login) unnamed (as through PgBouncer) and prepared (named statements, direct).
    const other = own === "extended" ? "prepared" : "extended";
    const compared = ({ create: "order-plain", login: "login-plain" } as Partial<Record<string, PgbenchScript>>)[name];
    if (compared) {
      const extra: NonNullable<typeof result.extraPgbench> = [];
      for (const [kind, mode] of [
        [spec.pgbench, other],
        [compared, "extended"],
        [compared, "prepared"],
      ] as const) {
        extra.push({ ...(await run(kind, mode)), kind, clients: opts.poolMax });
      }
      result.extraPgbench = extra;
      for (const x of extra) log(`${name}: pgbench ${x.kind} (${x.mode}) ${x.tps.toFixed(0)} tps`);
    }
    if (name === "login") {
      // Where the login's Postgres time goes: each statement alone, in the run's own mode, with
      // the Postgres CPU it cost per transaction (the harness's server only).
      const parts: NonNullable<HttpScenarioResult["loginStatements"]> = [];
      for (const kind of LOGIN_STATEMENTS) {
        const t0 = ctx.db.serverCpuTicks();
        const r = await run(kind, own);
        const t1 = ctx.db.serverCpuTicks();
        const postgresUs = t0 && t1 ? round(((t1.postgres - t0.postgres) * TICK_US) / Math.max(1, r.transactions), 0) : null;
        parts.push({ kind, mode: r.mode, tps: r.tps, failed: r.failed, postgresUs });
        log(`login: pgbench ${kind} (${r.mode}) ${r.tps.toFixed(0)} tps, Postgres ${postgresUs ?? "?"} µs CPU per statement`);
      }
      result.loginStatements = parts;
    }
  }
  if (name === "login" && hashCeiling) {
    const value = sSum.rps / hashCeiling.ceilingPerSecond;
    targets.push({ name: "login req/s vs the hash ceiling (indicative)", value: round(value * 100, 1), threshold: "—", met: true });
  }
  result.target = {
    description: `${name} req/s ≥ ${spec.targetRatio * 100} % of the plain-SQL baseline`,
    value: result.ratioPlain,
    threshold: spec.targetRatio,
    met: result.ratioPlain >= spec.targetRatio,
  };
  targets.push({
    name: result.target.description,
    value: round(result.target.value * 100, 1),
    threshold: `${spec.targetRatio * 100} %`,
    met: result.target.met,
  });
  const pgRatio = (sSum.postgresCpuUsPerRequest ?? NaN) / (pSum.postgresCpuUsPerRequest ?? NaN);
  if (name === "create") {
    targets.push({
      name: "create Postgres CPU per order ≤ 1.1× the plain-SQL baseline's",
      value: round(pgRatio, 2),
      threshold: "1.1×",
      met: pgRatio <= 1.1,
    });
    const p99 = sSum.p99Ms / pSum.p99Ms;
    targets.push({ name: "create p99 ≤ 1.3× the plain-SQL baseline's", value: round(p99, 2), threshold: "1.3×", met: p99 <= 1.3 });
  }
  if (name === "login") {
    targets.push({
      name: "login Postgres CPU per login ≤ 1.5× the plain-SQL baseline's",
      value: round(pgRatio, 2),
      threshold: "1.5×",
      met: pgRatio <= 1.5,
    });
  }
  if (sSum.requests === 0 || bSum.requests === 0 || pSum.requests === 0) {
    const msg = `${name}: no request completed (service ${sSum.requests}, baseline ${bSum.requests}, plain ${pSum.requests})`;
    ctx.warnings.push(msg);
    log(`WARNING ${msg}`);
  }
  if (sSum.errors > 0 || bSum.errors > 0 || pSum.errors > 0) {
    const msg = `${name}: ${sSum.errors} service, ${bSum.errors} baseline and ${pSum.errors} plain errors (non-2xx answers, socket errors or timeouts)`;
    // A service error always fails a smoke run; a baseline's rare error under a loaded CI machine
    // is reported (the comparison is off for that run) but is not a broken harness.
    if (sSum.errors > 0) ctx.warnings.push(msg);
    else ctx.notes.push(`baseline only: ${msg}`);
    log(`WARNING ${msg}`);
  }
  return result;
}

/** The service's whole order statement for one line of one product, in a transaction that is rolled back. */
async function explainOrder(ctx: Ctx): Promise<{ plan: string[]; executionMs: number }> {
  let plan: string[] = [];
  try {
    await ctx.admin.begin(async (tx) => {
      const line = [{ productId: ctx.productIds[0], quantity: 1 }];
      const rows = await tx.unsafe<{ "QUERY PLAN": string }[]>(
        `${HARNESS_MARK} explain (analyze, buffers) ${ORDER_PLACE}`,
        orderPlaceParams(line, crypto.randomUUID(), ctx.customers[0].userId, [crypto.randomUUID()]),
      );
      plan = rows.map((r) => r["QUERY PLAN"]);
      throw new Error("rollback");
    });
  } catch (error) {
    if (!(error instanceof Error && error.message === "rollback")) throw error;
  }
  return { plan, executionMs: Number(/Execution Time: ([\d.]+) ms/.exec(plan.join("\n"))?.[1] ?? NaN) };
}

/** What pgbench binds: the customers' sessions, the products with their prices. */
async function pgbenchData(ctx: Ctx): Promise<PgbenchData> {
  const rows = await ctx.admin.unsafe<{ id: string; price: string }[]>(
    `${HARNESS_MARK} select id::text, price::text from products where id = any($1::uuid[])`,
    [`{${ctx.productIds.join(",")}}`],
  );
  return {
    sessions: ctx.customers.map((c) => ({ sessionId: c.sessionId, userId: c.userId, email: c.email })),
    products: rows,
    now: new Date().toISOString().replace("T", " ").replace("Z", ""),
  };
}

// --- wire-format check ----------------------------------------------------------------------------

function shapeOf(v: unknown): unknown {
  if (Array.isArray(v)) return v.length ? [shapeOf(v[0])] : [];
  if (v && typeof v === "object")
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, shapeOf((v as Record<string, unknown>)[k])]),
    );
  return v === null ? "null" : typeof v;
}

/** One request per scenario to both servers: same status and the same JSON shape (equal data where it is deterministic). */
async function checkWireFormat(ctx: Ctx, scenarios: Scenario[]): Promise<void> {
  const enc = (x: unknown) => encodeURIComponent(JSON.stringify(x));
  const c = ctx.customers[0];
  const requests: { name: string; path: string; init?: RequestInit; exact: boolean }[] = [];
  if (scenarios.includes("list") || scenarios.includes("scale")) {
    requests.push({ name: "list", path: `/trpc/products.list?input=${enc({ limit: 20 })}`, exact: true });
    requests.push({ name: "list (bad cursor)", path: `/trpc/products.list?input=${enc({ cursor: "garbage" })}`, exact: false });
  }
  if (scenarios.includes("byId")) {
    requests.push({ name: "byId", path: `/trpc/products.byId?input=${enc({ id: ctx.productIds[0] })}`, exact: true });
    requests.push({ name: "byId (bad id)", path: `/trpc/products.byId?input=${enc({ id: "nope" })}`, exact: false });
  }
  const post = (body: unknown, token?: string): RequestInit => ({
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  if (scenarios.includes("create") || scenarios.includes("contended")) {
    requests.push({
      name: "create",
      path: "/trpc/orders.create",
      init: post({ items: [{ productId: ctx.productIds[1], quantity: 1 }] }, c.token),
      exact: false,
    });
    requests.push({
      name: "create (no token)",
      path: "/trpc/orders.create",
      init: post({ items: [{ productId: ctx.productIds[1], quantity: 1 }] }),
      exact: false,
    });
  }
  if (scenarios.includes("login")) {
    requests.push({ name: "login", path: "/trpc/auth.login", init: post({ email: c.email, password: BENCH_PASSWORD }), exact: false });
  }
  for (const r of requests) {
    const [a, b, c] = await Promise.all(
      [ctx.service, ctx.baseline, ctx.plain].map(async (s) => {
        const res = await fetch(s.url + r.path, r.init);
        return { status: res.status, body: (await res.json()) as Record<string, unknown> };
      }),
    );
    const strip = (x: { body: Record<string, unknown> }) => {
      // Request ids are the service's own extra; messages may be worded differently.
      const e = x.body.error as { message?: string; data?: Record<string, unknown> } | undefined;
      if (!e) return x.body;
      const { requestId: _r, ...data } = e.data ?? {};
      return { error: { ...e, message: "", data } };
    };
    const sa = strip(a);
    const alike = (x: typeof a) => {
      const sx = strip(x);
      return (
        a.status === x.status &&
        (r.exact ? JSON.stringify(sa) === JSON.stringify(sx) : JSON.stringify(shapeOf(sa)) === JSON.stringify(shapeOf(sx)))
      );
    };
    const same = alike(b) && alike(c);
    if (!same) {
      const msg = `wire format differs for ${r.name}: service ${a.status} ${JSON.stringify(a.body).slice(0, 300)} / baseline ${b.status} ${JSON.stringify(b.body).slice(0, 300)} / plain ${c.status} ${JSON.stringify(c.body).slice(0, 300)}`;
      ctx.warnings.push(msg);
      log(`WARNING ${msg}`);
    } else if (a.status >= 500) {
      throw new Error(`${r.name} answers ${a.status}: ${JSON.stringify(a.body).slice(0, 300)}`);
    }
  }
  log(`wire format: ${requests.length} requests compared`);
}

// --- contended ------------------------------------------------------------------------------------

async function runContended(ctx: Ctx) {
  const ORDERS = 200;
  const STOCK = 50;
  const [product] = await Promise.all([createProduct(ctx.handle.db, { name: "Contended product", price: "9.99", stock: STOCK })]);
  const once = async (server: Server) => {
    await setStock(ctx.handle.db, { productId: product.id, stock: STOCK });
    const body = JSON.stringify({ items: [{ productId: product.id, quantity: 1 }] });
    const started = performance.now();
    const statuses = await Promise.all(
      Array.from({ length: ORDERS }, (_, i) =>
        fetch(`${server.url}/trpc/orders.create`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${ctx.customers[i % ctx.customers.length].token}` },
          body,
        }).then(
          async (res) => {
            await res.arrayBuffer();
            return res.status;
          },
          () => 0,
        ),
      ),
    );
    const drainMs = performance.now() - started;
    const [row] = await ctx.admin.unsafe<{ stock: number }[]>(`${HARNESS_MARK} select stock from products where id = $1`, [product.id]);
    const ok = statuses.filter((s) => s === 200).length;
    const conflicts = statuses.filter((s) => s === 409).length;
    return { drainMs, ok, conflicts, other: ORDERS - ok - conflicts, stockAfter: row.stock };
  };
  const rounds: {
    service: Awaited<ReturnType<typeof once>>;
    baseline: Awaited<ReturnType<typeof once>>;
    plain: Awaited<ReturnType<typeof once>>;
  }[] = [];
  for (let r = 1; r <= Math.max(ctx.opts.rounds, 1); r++) {
    const service = await once(ctx.service);
    const baseline = await once(ctx.baseline);
    const plain = await once(ctx.plain);
    rounds.push({ service, baseline, plain });
    log(
      `contended round ${r}: service ${service.ok} ok / ${service.conflicts} conflict in ${service.drainMs.toFixed(0)} ms, baseline ${baseline.ok} ok / ${baseline.conflicts} conflict in ${baseline.drainMs.toFixed(0)} ms, plain ${plain.ok} ok / ${plain.conflicts} conflict in ${plain.drainMs.toFixed(0)} ms`,
    );
  }
  const exact = rounds.every((r) => r.service.ok === STOCK && r.service.conflicts === ORDERS - STOCK && r.service.stockAfter === 0);
  const exactBaseline = rounds.every((r) => r.baseline.ok === STOCK && r.baseline.stockAfter === 0);
  if (!exact) {
    ctx.warnings.push("contended: the service did not sell exactly the stock (see the JSON)");
    exitCode = 1;
  }
  if (!exactBaseline) ctx.warnings.push("contended: the baseline did not sell exactly the stock (see the JSON)");
  targets.push({
    name: `contended: exactly ${STOCK} of ${ORDERS} orders succeed, stock ends at 0`,
    value: rounds[0]?.service.ok ?? null,
    threshold: String(STOCK),
    met: exact,
  });
  return {
    kind: "contended" as const,
    orders: ORDERS,
    stock: STOCK,
    service: { drainMsMedian: round(median(rounds.map((r) => r.service.drainMs)), 1), exact },
    baseline: { drainMsMedian: round(median(rounds.map((r) => r.baseline.drainMs)), 1), exact: exactBaseline },
    plain: {
      drainMsMedian: round(median(rounds.map((r) => r.plain.drainMs)), 1),
      exact: rounds.every((r) => r.plain.ok === STOCK && r.plain.stockAfter === 0),
    },
    rounds,
  };
}

// --- scale ----------------------------------------------------------------------------------------

async function timeGet(
  url: string,
): Promise<{ ms: number; body: { result?: { data?: { items: unknown[]; nextCursor: string | null } } } }> {
  const started = performance.now();
  const res = await fetch(url);
  const body = (await res.json()) as { result?: { data?: { items: unknown[]; nextCursor: string | null } } };
  const ms = performance.now() - started;
  if (!res.ok) throw new Error(`GET ${url} → ${res.status} ${JSON.stringify(body).slice(0, 200)}`);
  return { ms, body };
}

async function explain(ctx: Ctx, q: Parameters<typeof listProductsStatement>[0]) {
  const { text, params } = listProductsStatement(q);
  const rows = await ctx.admin.unsafe<{ "QUERY PLAN": string }[]>(`${HARNESS_MARK} explain (analyze, buffers) ${text}`, params);
  const plan = rows.map((r) => r["QUERY PLAN"]);
  const execMs = Number(/Execution Time: ([\d.]+) ms/.exec(plan.join("\n"))?.[1] ?? NaN);
  return {
    plan,
    executionMs: execMs,
    top: plan
      .slice(0, 4)
      .map((l) => l.trim())
      .join(" | "),
  };
}

async function runScale(ctx: Ctx) {
  const { opts } = ctx;
  log(`scale: loading ${opts.scaleRows.toLocaleString("en")} products`);
  const loadSeconds = await loadScaleCatalog(ctx.admin, opts.scaleRows);
  const [{ n }] = await ctx.admin.unsafe<{ n: string }[]>(`${HARNESS_MARK} select count(*)::text as n from products`);
  log(`scale: ${Number(n).toLocaleString("en")} products (loaded in ${loadSeconds.toFixed(1)} s)`);
  const enc = (x: unknown) => encodeURIComponent(JSON.stringify(x));
  const listUrl = (server: Server, input: Record<string, unknown>) => `${server.url}/trpc/products.list?input=${enc(input)}`;

  // Page 500 is reached the way a client reaches it: following nextCursor from page 1.
  const PAGE = 500;
  const pagesAvailable = Math.floor(Number(n) / 20);
  const target = Math.min(PAGE, pagesAvailable);
  let cursor: string | null = null;
  const walkMs: number[] = [];
  for (let page = 1; page < target; page++) {
    const r = await timeGet(listUrl(ctx.service, { limit: 20, ...(cursor ? { cursor } : {}) }));
    walkMs.push(r.ms);
    cursor = r.body.result?.data?.nextCursor ?? null;
    if (!cursor) throw new Error(`scale: page ${page} had no nextCursor`);
  }
  const deepCursor = cursor!;
  // Interleaved (A B A B …) so drift in the machine's load hits every series alike.
  const sampleInterleaved = async (series: { server: Server; input: Record<string, unknown> }[]) => {
    const ms = series.map(() => [] as number[]);
    for (let i = 0; i < opts.samples; i++) {
      for (const [k, s] of series.entries()) ms[k].push((await timeGet(listUrl(s.server, s.input))).ms);
    }
    return ms.map((m) => ({ p50Ms: round(median(m), 3)!, p99Ms: round(percentile(m, 99), 3)! }));
  };
  const [s1, sN, b1, bN] = await sampleInterleaved([
    { server: ctx.service, input: { limit: 20 } },
    { server: ctx.service, input: { limit: 20, cursor: deepCursor } },
    { server: ctx.baseline, input: { limit: 20 } },
    { server: ctx.baseline, input: { limit: 20, cursor: deepCursor } },
  ]);
  const pages = { service: { page1: s1, pageN: sN }, baseline: { page1: b1, pageN: bN } };
  const pageRatio = pages.service.pageN.p50Ms / pages.service.page1.p50Ms;
  log(
    `scale: page 1 p50 ${pages.service.page1.p50Ms} ms, page ${target} p50 ${pages.service.pageN.p50Ms} ms (×${pageRatio.toFixed(2)}); walk p50 ${median(walkMs).toFixed(2)} ms/page`,
  );

  // Two-word terms match 1 in 400 names, one material 1 in 20, a number a handful, one nothing.
  const terms = ["Granite Lamp", "copper", "leather sofa", "77777", "no such product"];
  const search: Record<
    string,
    { service: { p50Ms: number; p99Ms: number }; baseline: { p50Ms: number; p99Ms: number }; matchesOnPage: number }
  > = {};
  for (const term of terms) {
    const first = await timeGet(listUrl(ctx.service, { limit: 20, search: term }));
    const [service, baseline] = await sampleInterleaved([
      { server: ctx.service, input: { limit: 20, search: term } },
      { server: ctx.baseline, input: { limit: 20, search: term } },
    ]);
    search[term] = { service, baseline, matchesOnPage: first.body.result?.data?.items.length ?? 0 };
    log(
      `scale: search "${term}" p50 ${search[term].service.p50Ms} ms (baseline ${search[term].baseline.p50Ms} ms, ${search[term].matchesOnPage} on page 1)`,
    );
  }
  const searchP50 = Math.max(...terms.map((t) => search[t].service.p50Ms));

  const decoded = JSON.parse(Buffer.from(deepCursor, "base64url").toString("utf8")) as [string, string, string];
  const explains = {
    page1: await explain(ctx, { sort: "newest", limit: 20 }),
    pageN: await explain(ctx, { sort: "newest", limit: 20, after: [decoded[1], decoded[2]] }),
    ...Object.fromEntries(
      await Promise.all(terms.map(async (t) => [`search "${t}"`, await explain(ctx, { sort: "newest", limit: 20, search: t })] as const)),
    ),
  };
  for (const [k, v] of Object.entries(explains)) log(`scale: EXPLAIN ${k}: ${v.executionMs} ms: ${v.top}`);

  const full = Number(n) >= 1_000_000;
  targets.push({ name: `page ${target} within 1.5× page 1 (p50)`, value: round(pageRatio, 2), threshold: "1.5×", met: pageRatio <= 1.5 });
  targets.push({
    name: `search p50 < 20 ms at ${Number(n).toLocaleString("en")} products (worst term)`,
    value: searchP50,
    threshold: "20 ms",
    met: searchP50 < 20,
  });
  if (!full) ctx.warnings.push(`scale ran on ${Number(n).toLocaleString("en")} products, not 1,000,000: its targets are only indicative`);
  return {
    kind: "scale" as const,
    products: Number(n),
    loadSeconds: round(loadSeconds, 1),
    page: target,
    pages,
    pageRatio: round(pageRatio, 2),
    walkP50Ms: round(median(walkMs), 3),
    search,
    searchWorstP50Ms: searchP50,
    explain: explains,
  };
}

// --- static (load-generator calibration) ----------------------------------------------------------

async function runStatic(ctx: Ctx) {
  const port = await freePort();
  const server = await startServer({
    name: "static",
    cmd: [process.execPath, "bench/static-server.ts"],
    env: { ...process.env, PORT: String(port) },
    port,
    healthPath: "/",
    logFile: join(ctx.dataDir, "static.log"),
    cwd: repoRoot,
  });
  try {
    const runs: WrkResult[] = [];
    for (const connections of [16, 64]) {
      const ticks0 = cpuTicks(server.proc.pid) ?? NaN;
      const r = await runWrk({
        url: server.url,
        script: "static.lua",
        connections,
        threads: ctx.opts.wrkThreads,
        seconds: Math.max(1, Math.min(ctx.opts.seconds, 5)),
        dataDir: ctx.dataDir,
      });
      const serverUs = (((cpuTicks(server.proc.pid) ?? NaN) - ticks0) * TICK_US) / Math.max(1, r.requests);
      runs.push(r);
      log(
        `static (${connections} connections): ${r.rps.toFixed(0)} req/s, wrk ${r.wrkCpuUsPerRequest.toFixed(1)} µs CPU/request, server ${serverUs.toFixed(1)} µs CPU/request`,
      );
    }
    return {
      kind: "static" as const,
      runs: runs.map((r, i) => ({
        connections: [16, 64][i],
        rps: round(r.rps, 0),
        p50Ms: round(r.p50Ms),
        p99Ms: round(r.p99Ms),
        wrkCpuUsPerRequest: round(r.wrkCpuUsPerRequest, 1),
      })),
    };
  } finally {
    await server.stop();
  }
}

// --- report ---------------------------------------------------------------------------------------

const fmt = (x: number | null | undefined, digits = 0) =>
  x === null || x === undefined || !Number.isFinite(x)
    ? "—"
    : x.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits });

function printReport(ctx: Ctx, memory: Record<string, unknown>) {
  const lines: string[] = [];
  lines.push("");
  lines.push(
    `mode: ${ctx.opts.mode === "direct" ? "straight to Postgres, DATABASE_PREPARE=true" : "through PgBouncer (transaction mode), DATABASE_PREPARE=false"}; service ${
      Object.keys(shellKnobs).length
        ? `with ${Object.entries(shellKnobs)
            .map(([k, v]) => `${k}=${v}`)
            .join(", ")} from the shell (not as deployed)`
        : "with its request log (default LOG_LEVEL)"
    }`,
  );
  lines.push("");
  lines.push(
    "| scenario | conns | service req/s | p50 / p99 ms | same-SQL req/s | p50 / p99 ms | plain-SQL req/s | p50 / p99 ms | s / same | s / plain | errors s/same/plain |",
  );
  lines.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const name of ["login", "list", "byId", "create"] as const) {
    const r = results[name] as HttpScenarioResult | undefined;
    if (!r) continue;
    lines.push(
      `| ${name} | ${r.connections} | ${fmt(r.service.rps)} | ${fmt(r.service.p50Ms, 1)} / ${fmt(r.service.p99Ms, 1)} | ${fmt(r.baseline.rps)} | ${fmt(r.baseline.p50Ms, 1)} / ${fmt(r.baseline.p99Ms, 1)} | ${fmt(r.plain.rps)} | ${fmt(r.plain.p50Ms, 1)} / ${fmt(r.plain.p99Ms, 1)} | ${fmt(r.ratio, 2)} | **${fmt(r.ratioPlain, 2)}** | ${r.service.errors} / ${r.baseline.errors} / ${r.plain.errors} |`,
    );
  }
  lines.push("");
  lines.push("Every round (req/s service / same-SQL / plain-SQL, and service/plain):");
  lines.push("");
  for (const name of ["login", "list", "byId", "create"] as const) {
    const r = results[name] as HttpScenarioResult | undefined;
    if (!r) continue;
    const rounds = r.service.rounds.map(
      (s, i) =>
        `${fmt(s.rps)} / ${fmt(r.baseline.rounds[i]?.rps)} / ${fmt(r.plain.rounds[i]?.rps)} (${fmt(s.rps / (r.plain.rounds[i]?.rps ?? NaN), 2)})`,
    );
    lines.push(`- ${name}: ${rounds.join("; ")}`);
  }
  lines.push("");
  lines.push("| scenario | statements per request s / same / plain | pgbench tps (statement shape, mode) |");
  lines.push("|---|---:|---|");
  for (const name of ["login", "list", "byId", "create"] as const) {
    const r = results[name] as HttpScenarioResult | undefined;
    if (!r) continue;
    const st = r.statementsPerRequestBySide;
    const pgs = [r.pgbench, ...(r.extraPgbench ?? [])]
      .filter((x) => x)
      .map((x) => `${fmt(x!.tps)} (${x!.kind}, ${(x as { mode?: string }).mode ?? ""})`);
    lines.push(`| ${name} | ${st ? `${st.service} / ${st.baseline} / ${st.plain}` : "—"} | ${pgs.join("; ") || "—"} |`);
  }
  const parts = (results.login as HttpScenarioResult | undefined)?.loginStatements;
  if (parts?.length) {
    lines.push("");
    lines.push(
      `login, statement by statement (pgbench, ${parts[0].mode}, each alone): ${parts
        .map(
          (x) =>
            `${x.kind} ${fmt(x.tps)} tps${x.postgresUs === null ? "" : `, ${fmt(x.postgresUs)} µs Postgres CPU`}${x.failed ? `, ${x.failed} failed` : ""}`,
        )
        .join("; ")}`,
    );
  }
  if (ctx.db.ownServer) {
    lines.push("");
    lines.push("CPU per request (µs, medians): every process shares the same cores, so cores × 10⁶ / total bounds req/s.");
    lines.push("");
    lines.push("| scenario | side | req/s | server | Postgres | PgBouncer | wrk | total | bound req/s |");
    lines.push("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (const name of ["login", "list", "byId", "create"] as const) {
      const r = results[name] as HttpScenarioResult | undefined;
      if (!r) continue;
      for (const [side, x] of [
        ["service", r.service],
        ["same-SQL", r.baseline],
        ["plain-SQL", r.plain],
      ] as const) {
        const total = x.cpuUsPerRequest + (x.postgresCpuUsPerRequest ?? 0) + (x.pgbouncerCpuUsPerRequest ?? 0) + x.wrkCpuUsPerRequest;
        lines.push(
          `| ${name} | ${side} | ${fmt(x.rps)} | ${fmt(x.cpuUsPerRequest)} | ${fmt(x.postgresCpuUsPerRequest)} | ${fmt(x.pgbouncerCpuUsPerRequest)} | ${fmt(x.wrkCpuUsPerRequest)} | ${fmt(total)} | ${fmt((availableParallelism() * 1e6) / total)} |`,
        );
      }
    }
  }
  const create = results.create as HttpScenarioResult | undefined;
  if (create?.roundTripsPerOrder) {
    lines.push("");
    lines.push(
      `create: statements per order, from pg_stat_statements: service ${create.roundTripsPerOrder.service}, same-SQL ${create.roundTripsPerOrder.baseline}, plain-SQL ${create.roundTripsPerOrder.plain}; service and same-SQL baseline send the same statements: ${create.statementsPerRequest?.sameStatements ? "yes" : "NO"}`,
    );
    if (create.explain)
      lines.push(
        `create: EXPLAIN ANALYZE of one order of one line: ${create.explain.plan.find((l) => l.startsWith("Planning Time"))}, Execution Time ${create.explain.executionMs} ms`,
      );
  }
  const login = results.login as HttpScenarioResult | undefined;
  if (login?.hashCeiling) {
    lines.push(
      `login: argon2id verify ${login.hashCeiling.msPerHash} ms → ceiling ${login.hashCeiling.cores} cores × 1000 / ms = ${fmt(login.hashCeiling.ceilingPerSecond)}/s (${fmt(login.hashCeiling.parallelPerSecond)}/s measured with ${login.hashCeiling.cores} verifies in flight); service at ${fmt((login.service.rps / login.hashCeiling.ceilingPerSecond) * 100)} % of it`,
    );
  }
  const contended = results.contended as Awaited<ReturnType<typeof runContended>> | undefined;
  if (contended) {
    lines.push(
      `contended: ${contended.orders} orders on stock ${contended.stock}: service drains in ${fmt(contended.service.drainMsMedian)} ms (median), exactly ${contended.stock} succeed: ${contended.service.exact ? "yes" : "NO"}; same-SQL baseline ${fmt(contended.baseline.drainMsMedian)} ms, plain-SQL ${fmt(contended.plain.drainMsMedian)} ms`,
    );
  }
  const scale = results.scale as Awaited<ReturnType<typeof runScale>> | undefined;
  if (scale) {
    lines.push(
      `scale (${fmt(scale.products)} products): page 1 p50 ${scale.pages.service.page1.p50Ms} ms, page ${scale.page} p50 ${scale.pages.service.pageN.p50Ms} ms (×${scale.pageRatio}); worst search p50 ${scale.searchWorstP50Ms} ms`,
    );
  }
  const stat = results.static as Awaited<ReturnType<typeof runStatic>> | undefined;
  if (stat)
    lines.push(
      `load generator (wrk against a static Bun.serve): ${stat.runs.map((r) => `${fmt(r.rps)} req/s at ${r.connections} conns, ${r.wrkCpuUsPerRequest} µs wrk CPU per request`).join("; ")}`,
    );
  lines.push(`peak RSS (VmHWM): service ${fmt(Number(memory.serviceHwmMb), 1)} MB, baseline ${fmt(Number(memory.baselineHwmMb), 1)} MB`);
  lines.push(
    `load on the machine during the run: 1-minute load average ${loadAverages.map((x) => x.toFixed(1)).join(" → ")} (${availableParallelism()} cores)`,
  );
  lines.push("");
  lines.push("| target | value | threshold | met |");
  lines.push("|---|---:|---:|---|");
  for (const t of targets) lines.push(`| ${t.name} | ${t.value ?? "—"} | ${t.threshold} | ${t.met ? "yes" : "**no**"} |`);
  if (ctx.warnings.length || ctx.notes.length) {
    lines.push("");
    for (const w of ctx.warnings) lines.push(`warning: ${w}`);
    for (const n of ctx.notes) lines.push(`note: ${n}`);
  }
  console.log(lines.join("\n"));
  return lines.join("\n");
}

const loadAverages: number[] = [];

// --- main -----------------------------------------------------------------------------------------

const repoRoot = join(import.meta.dir, "..");

async function main() {
  const opts = parseOptions(process.argv.slice(2));
  const started = new Date();
  log(`scenarios: ${opts.scenarios.join(", ")}; ${opts.rounds} round(s) of ${opts.seconds}s${opts.smoke ? " (smoke)" : ""}`);
  await ensureWrk(log);

  const dataDir = mkdtempSync(join(tmpdir(), "bench-run-"));
  const db = await openBenchDatabase(log);
  const cleanups: (() => Promise<void>)[] = [() => db.teardown()];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch((e) => log(`cleanup: ${e instanceof Error ? e.message : String(e)}`));
    cleanups.length = 0;
  };
  process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));
  process.on("SIGTERM", () => void cleanup().then(() => process.exit(143)));

  try {
    const handle = await createPostgresDatabase({ url: db.directUrl, poolMax: 4, prepare: false });
    cleanups.push(() => handle.close());
    const admin = postgres(db.directUrl, { max: 2, prepare: false, onnotice: () => {} });
    cleanups.push(() => admin.end({ timeout: 5 }));
    const { applied } = await runMigrations(handle.db);
    log(`database ${db.name}: ${applied} migrations applied`);
    const statsOn = await enableStatementStats(admin);
    if (!statsOn) log("pg_stat_statements is not available (shared_preload_libraries): round trips will not be counted");

    const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
    const customers = await loadCustomers(handle.db, secret, opts.customers);
    const productIds = await loadProducts(handle.db, opts.products, 100_000_000);
    await writeKeyTables(admin, productIds, customers);
    writeFileSync(join(dataDir, "tokens.txt"), `${customers.map((c) => c.token).join("\n")}\n`);
    writeFileSync(join(dataDir, "emails.txt"), `${customers.map((c) => c.email).join("\n")}\n`);
    writeFileSync(join(dataDir, "password.txt"), `${BENCH_PASSWORD}\n`);
    writeFileSync(join(dataDir, "product-ids.txt"), `${productIds.join("\n")}\n`);
    writeFileSync(join(dataDir, "order-product-ids.txt"), `${productIds.join("\n")}\n`);
    await admin.unsafe(`${HARNESS_MARK} vacuum analyze`);

    const direct = opts.mode === "direct";
    const common = {
      DATABASE_URL: direct ? db.directUrl : db.pooledUrl,
      DATABASE_PREPARE: direct ? "true" : "false",
      DATABASE_POOL_MAX: String(opts.poolMax),
      JWT_SECRET: secret,
      HOST: "127.0.0.1",
      JOBS: "false",
      SEED: "false",
      NODE_ENV: "production",
      PATH: process.env.PATH,
      HOME: process.env.HOME,
    };
    const [servicePort, baselinePort, plainPort] = [await freePort(), await freePort(), await freePort()];
    const service = await startServer({
      name: "service",
      cmd: opts.profile
        ? [process.execPath, "--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${join(dataDir, "profile")}`, opts.serviceEntry]
        : [process.execPath, "run", opts.serviceEntry],
      // SHELL_KNOBS from the shell, to measure what each layer costs (the fast path, the request
      // log, the metrics, the slow-statement log off).
      env: { ...common, PORT: String(servicePort), ...shellKnobs },
      port: servicePort,
      healthPath: "/health",
      logFile: join(dataDir, "service.log"),
      cwd: opts.serviceDir ?? repoRoot,
    });
    cleanups.push(() => service.stop());
    const baseline = await startServer({
      name: "baseline",
      cmd: [process.execPath, "bench/baseline.ts"],
      env: { ...common, PORT: String(baselinePort) },
      port: baselinePort,
      healthPath: "/health",
      logFile: join(dataDir, "baseline.log"),
      cwd: repoRoot,
    });
    cleanups.push(() => baseline.stop());
    const plain = await startServer({
      name: "plain",
      cmd: [process.execPath, "bench/baseline.ts"],
      env: { ...common, PORT: String(plainPort), BASELINE_SQL: "plain" },
      port: plainPort,
      healthPath: "/health",
      logFile: join(dataDir, "plain.log"),
      cwd: repoRoot,
    });
    cleanups.push(() => plain.stop());
    log(
      `service ${service.url} (pid ${service.proc.pid}), same-SQL baseline ${baseline.url} (pid ${baseline.proc.pid}), plain-SQL baseline ${plain.url} (pid ${plain.proc.pid}); ${opts.mode}; logs in ${dataDir}`,
    );
    const loadTimer = setInterval(() => loadAverages.push(Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0])), 60_000);
    loadAverages.push(Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]));
    cleanups.push(async () => clearInterval(loadTimer));

    const ctx: Ctx = {
      opts,
      db,
      handle,
      admin,
      statsOn,
      dataDir,
      service,
      baseline,
      plain,
      customers,
      productIds,
      warnings: [],
      notes: [],
    };
    await checkWireFormat(ctx, opts.scenarios);

    for (const scenario of opts.scenarios) {
      log(`== ${scenario}`);
      if (scenario === "static") results.static = await runStatic(ctx);
      else if (scenario === "contended") results.contended = await runContended(ctx);
      else if (scenario === "scale") results.scale = await runScale(ctx);
      else results[scenario] = await runHttpScenario(ctx, scenario);
    }

    const sMem = memoryOf(service.proc.pid);
    const bMem = memoryOf(baseline.proc.pid);
    const memory = {
      serviceHwmMb: sMem ? round(sMem.hwmKb / 1024, 1) : null,
      serviceRssMb: sMem ? round(sMem.rssKb / 1024, 1) : null,
      baselineHwmMb: bMem ? round(bMem.hwmKb / 1024, 1) : null,
    };
    if (memory.serviceHwmMb !== null) {
      targets.push({ name: "service peak RSS < 200 MB", value: memory.serviceHwmMb, threshold: "200 MB", met: memory.serviceHwmMb < 200 });
    }

    if (opts.profile) {
      // The profile is written when the service exits.
      await service.stop();
      log(`service CPU profile: ${join(dataDir, "profile")} (markdown: *.md)`);
    }
    loadAverages.push(Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]));
    const markdown = printReport(ctx, memory);
    const finished = new Date();
    const cpu = cpus();
    const report = {
      date: started.toISOString(),
      durationSeconds: Math.round((finished.getTime() - started.getTime()) / 1000),
      command: `bun run bench ${process.argv.slice(2).join(" ")}`.trim(),
      machine: { cores: availableParallelism(), cpu: cpu[0]?.model, memoryGb: round(totalmem() / 2 ** 30, 1), bun: Bun.version },
      database: {
        ownServer: db.ownServer,
        via:
          opts.mode === "direct" ? "straight to Postgres, DATABASE_PREPARE=true" : "PgBouncer (transaction mode), DATABASE_PREPARE=false",
        poolMax: opts.poolMax,
      },
      options: opts,
      results,
      memory,
      targets,
      warnings: ctx.warnings,
    };
    const dir = join(repoRoot, "bench", "results");
    mkdirSync(dir, { recursive: true });
    const file = join(
      dir,
      `${started
        .toISOString()
        .replace(/:/g, "-")
        .replace(/\.\d+Z$/, "Z")}${opts.smoke ? "-smoke" : ""}.json`,
    );
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    log(`results written to ${file}`);
    if (!opts.smoke) {
      const md = join(dir, `${started.toISOString().slice(0, 16).replace(":", "")}Z-${opts.label}-${opts.mode}.md`);
      writeFileSync(
        md,
        `# \`${report.command}\`\n\n${started.toISOString()}, ${report.durationSeconds} s; JSON: \`${file.slice(dir.length + 1)}\` (not committed)\n${markdown}\n`,
      );
      log(`report written to ${md}`);
    }
    if (opts.smoke && ctx.warnings.some((w) => !w.startsWith("scale ran on"))) exitCode = 1;
  } catch (error) {
    exitCode = 1;
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    for (const f of ["service.log", "baseline.log"]) {
      try {
        const text = readFileSync(join(dataDir, f), "utf8").trim();
        if (text) console.error(`--- ${f} (tail)\n${text.split("\n").slice(-20).join("\n")}`);
      } catch {
        // not started
      }
    }
  } finally {
    await cleanup();
  }
  process.exit(exitCode);
}

// scale-orders compares the service at 0 and at N orders on databases of its own, with no
// baseline servers: it is a run of its own, chosen here like any scenario.
const argv = process.argv.slice(2);
if (argv.includes("scale-orders")) {
  const { runScaleOrders } = await import("./scale-orders");
  process.exit(await runScaleOrders(argv.filter((a) => a !== "scale-orders")));
} else {
  await main();
}
