// npm run bench:observability -- [byId] [create] [--duration=S] [--rounds=N] [--warmup=S] [--smoke]
//
// What metrics and tracing cost on the hot paths: three copies of the real service on the same
// PgBouncer, measured in turn within each round (the order rotates from round to round, so
// drift on a shared machine falls on every side alike):
//   off     METRICS=false, LOG_SLOW_QUERY_MS=0: no observer anywhere (the clients are used bare);
//   metrics the defaults: Prometheus metrics on, slow-statement log at 500 ms, tracing off;
//   traced  metrics plus OpenTelemetry, exporting over OTLP/HTTP to a receiver on loopback;
//   traced-5% (only with --sides=…): traced with OTEL_TRACES_SAMPLER=parentbased_traceidratio at 0.05;
//   metrics-no-slow-log (only with --sides=…): metrics with LOG_SLOW_QUERY_MS=0, which isolates
//           the cost of the per-call AsyncLocalStorage scope the slow-statement line needs.
// See bench/README.md ("Observability overhead").

import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { createPostgresDatabase } from "../src/db/client";
import { runMigrations } from "../src/db/migrate";
import { BENCH_PASSWORD, loadCustomers, loadProducts, writeKeyTables } from "./lib/load";
import { HARNESS_MARK, openBenchDatabase } from "./lib/postgres";
import { cpuTicks, freePort, type Server, sleep, startServer, TICK_US } from "./lib/proc";
import { ensureWrk, runWrk } from "./lib/wrk";

const repoRoot = join(import.meta.dir, "..");
const SCENARIOS = {
  byId: { script: "by-id.lua", connections: 64 },
  create: { script: "create.lua", connections: 32 },
} as const;
type ScenarioName = keyof typeof SCENARIOS;
const ALL_SIDES = ["off", "metrics", "traced", "traced-5%", "metrics-no-slow-log"] as const;
type Side = (typeof ALL_SIDES)[number];

function parseOptions(argv: string[]) {
  const smoke = argv.includes("--smoke");
  const num = (name: string, fallback: number) => {
    const a = argv.find((x) => x.startsWith(`--${name}=`));
    return a ? Number(a.split("=")[1]) : fallback;
  };
  const named = argv.filter((a) => !a.startsWith("--")) as ScenarioName[];
  for (const n of named) if (!(n in SCENARIOS)) throw new Error(`unknown scenario ${n}: byId or create`);
  return {
    smoke,
    scenarios: named.length ? named : (Object.keys(SCENARIOS) as ScenarioName[]),
    seconds: num("duration", smoke ? 2 : 10),
    rounds: num("rounds", smoke ? 1 : 5),
    warmupSeconds: num("warmup", smoke ? 0 : 3),
    sides: (argv
      .find((a) => a.startsWith("--sides="))
      ?.slice("--sides=".length)
      .split(",") ?? ["off", "metrics", "traced"]) as Side[],
    poolMax: 10,
  };
}

const log = (msg: string) => console.error(`[obs-bench] ${msg}`);
const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const r1 = (x: number) => Math.round(x * 10) / 10;
const pct = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)} %`;

/** A stand-in collector: accepts OTLP/HTTP exports, counts spans, answers as a collector does. */
function startReceiver() {
  let exports = 0;
  let bytes = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const body = await req.arrayBuffer();
      exports++;
      bytes += body.byteLength;
      return Response.json({});
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, stats: () => ({ exports, bytes }), stop: () => server.stop(true) };
}

interface Round {
  side: Side;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerRequest: number;
  errors: number;
}

async function measure(server: Server, scenario: ScenarioName, seconds: number, dataDir: string): Promise<Omit<Round, "side">> {
  const spec = SCENARIOS[scenario];
  const t0 = cpuTicks(server.proc.pid) ?? NaN;
  const r = await runWrk({ url: server.url, script: spec.script, connections: spec.connections, threads: 1, seconds, dataDir });
  await sleep(Math.min(3000, Math.max(200, 2 * r.p99Ms)));
  const t1 = cpuTicks(server.proc.pid) ?? NaN;
  if (server.proc.exitCode !== null) throw new Error(`${server.name} died: see ${server.logFile}`);
  return { rps: r.rps, p50Ms: r.p50Ms, p99Ms: r.p99Ms, cpuUsPerRequest: ((t1 - t0) * TICK_US) / Math.max(1, r.requests), errors: r.errors };
}

async function main() {
  const opts = parseOptions(process.argv.slice(2));
  const SIDES = opts.sides;
  if (SIDES[0] !== "off" || SIDES.some((x) => !ALL_SIDES.includes(x)))
    throw new Error(`--sides: off first, then any of ${ALL_SIDES.join(", ")}`);
  const started = new Date();
  await ensureWrk(log);
  const dataDir = mkdtempSync(join(tmpdir(), "bench-obs-"));
  const db = await openBenchDatabase(log);
  const receiver = startReceiver();
  const cleanups: (() => Promise<unknown> | undefined)[] = [() => db.teardown(), () => receiver.stop()];
  let exitCode = 0;
  try {
    const handle = await createPostgresDatabase({ url: db.directUrl, poolMax: 4, prepare: false });
    cleanups.push(() => handle.close());
    const admin = postgres(db.directUrl, { max: 2, prepare: false, onnotice: () => {} });
    cleanups.push(() => admin.end({ timeout: 5 }));
    await runMigrations(handle.db);
    const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
    const customers = await loadCustomers(handle.db, secret, opts.smoke ? 8 : 64);
    const productIds = await loadProducts(handle.db, opts.smoke ? 100 : 1000, 100_000_000);
    await writeKeyTables(admin, productIds, customers);
    writeFileSync(join(dataDir, "tokens.txt"), `${customers.map((c) => c.token).join("\n")}\n`);
    writeFileSync(join(dataDir, "emails.txt"), `${customers.map((c) => c.email).join("\n")}\n`);
    writeFileSync(join(dataDir, "password.txt"), `${BENCH_PASSWORD}\n`);
    writeFileSync(join(dataDir, "product-ids.txt"), `${productIds.join("\n")}\n`);
    writeFileSync(join(dataDir, "order-product-ids.txt"), `${productIds.join("\n")}\n`);
    await admin.unsafe(`${HARNESS_MARK} vacuum analyze`);

    const common = {
      DATABASE_URL: db.pooledUrl,
      DATABASE_PREPARE: "false",
      DATABASE_POOL_MAX: String(opts.poolMax),
      JWT_SECRET: secret,
      HOST: "127.0.0.1",
      JOBS: "false",
      SEED: "false",
      LOG_LEVEL: "warn",
      NODE_ENV: "production",
      PATH: process.env.PATH,
      HOME: process.env.HOME,
    };
    const sideEnv: Record<Side, Record<string, string>> = {
      off: { METRICS: "false", LOG_SLOW_QUERY_MS: "0" },
      metrics: {},
      traced: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url },
      "traced-5%": {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0.05",
      },
      "metrics-no-slow-log": { LOG_SLOW_QUERY_MS: "0" },
    };
    const servers = {} as Record<Side, Server>;
    for (const side of SIDES) {
      const port = await freePort();
      servers[side] = await startServer({
        name: side,
        cmd: [process.execPath, "run", "src/server.ts"],
        env: { ...common, ...sideEnv[side], PORT: String(port) },
        port,
        healthPath: "/health",
        logFile: join(dataDir, `${side}.log`),
        cwd: repoRoot,
        timeoutMs: 60_000,
      });
      cleanups.push(() => servers[side].stop());
    }
    // The switch really is what differs: /metrics only where metrics are on.
    const metricsStatus = Object.fromEntries(
      await Promise.all(SIDES.map(async (s) => [s, (await fetch(`${servers[s].url}/metrics`)).status] as const)),
    );
    if (Object.entries(metricsStatus).some(([side, status]) => status !== (side === "off" ? 404 : 200))) {
      throw new Error(`unexpected /metrics answers: ${JSON.stringify(metricsStatus)}`);
    }
    log(`servers up; logs in ${dataDir}`);

    const results: Record<string, { rounds: Round[] }> = {};
    for (const scenario of opts.scenarios) {
      log(`== ${scenario}`);
      if (opts.warmupSeconds > 0) for (const side of SIDES) await measure(servers[side], scenario, opts.warmupSeconds, dataDir);
      const rounds: Round[] = [];
      for (let i = 0; i < opts.rounds; i++) {
        // Rotate the order: off, metrics, traced; then metrics, traced, off; …
        const order = SIDES.map((_, k) => SIDES[(k + i) % SIDES.length]);
        for (const side of order) {
          const m = await measure(servers[side], scenario, opts.seconds, dataDir);
          rounds.push({ side, ...m });
          log(
            `${scenario} round ${i + 1} ${side}: ${r1(m.rps)} req/s, p50 ${m.p50Ms.toFixed(2)} ms, p99 ${m.p99Ms.toFixed(2)} ms, ${r1(m.cpuUsPerRequest)} µs CPU/req`,
          );
        }
      }
      results[scenario] = { rounds };
    }
    const exported = receiver.stats();

    // --- report ---
    const lines: string[] = [];
    const by = (rounds: Round[], side: Side) => rounds.filter((r) => r.side === side);
    lines.push("| scenario | side | req/s (median) | vs off | p50 ms | p99 ms | server CPU µs/req | vs off | errors |");
    lines.push("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    const summary: Record<string, unknown> = {};
    for (const [scenario, { rounds }] of Object.entries(results)) {
      const off = by(rounds, "off");
      for (const side of SIDES) {
        const rs = by(rounds, side);
        const rps = median(rs.map((r) => r.rps));
        const cpu = median(rs.map((r) => r.cpuUsPerRequest));
        // Paired per round: each round's side against that round's off run.
        const rpsRatio = median(rs.map((r, k) => r.rps / off[k].rps - 1));
        const cpuRatio = median(rs.map((r, k) => r.cpuUsPerRequest / off[k].cpuUsPerRequest - 1));
        summary[`${scenario}.${side}`] = { rps, cpuUsPerRequest: cpu, rpsVsOff: rpsRatio, cpuVsOff: cpuRatio };
        lines.push(
          `| ${scenario} | ${side} | ${Math.round(rps).toLocaleString("en")} | ${side === "off" ? "—" : pct(rpsRatio)} | ` +
            `${median(rs.map((r) => r.p50Ms)).toFixed(2)} | ${median(rs.map((r) => r.p99Ms)).toFixed(2)} | ${r1(cpu)} | ` +
            `${side === "off" ? "—" : pct(cpuRatio)} | ${rs.reduce((n, r) => n + r.errors, 0)} |`,
        );
      }
    }
    lines.push("");
    lines.push("Per round (req/s · server CPU µs/req), in the order run:");
    lines.push("");
    lines.push(`| scenario | round | ${SIDES.join(" | ")} |`);
    lines.push(`|---|---:|${SIDES.map(() => "---:").join("|")}|`);
    for (const [scenario, { rounds }] of Object.entries(results)) {
      for (let i = 0; i < opts.rounds; i++) {
        const cell = (side: Side) => {
          const r = by(rounds, side)[i];
          return `${Math.round(r.rps).toLocaleString("en")} · ${r1(r.cpuUsPerRequest)}`;
        };
        lines.push(`| ${scenario} | ${i + 1} | ${SIDES.map(cell).join(" | ")} |`);
      }
    }
    lines.push("");
    lines.push(`OTLP receiver: ${exported.exports} exports, ${(exported.bytes / 1e6).toFixed(1)} MB.`);
    console.log(lines.join("\n"));

    for (const [scenario, { rounds }] of Object.entries(results)) {
      const errors = rounds.reduce((n, r) => n + r.errors, 0);
      if (errors > 0) {
        log(`${scenario}: ${errors} errors`);
        if (opts.smoke) exitCode = 1;
      }
    }
    const cpu = cpus();
    const report = {
      date: started.toISOString(),
      command: `npm run bench:observability -- ${process.argv.slice(2).join(" ")}`.trim(),
      machine: { cores: availableParallelism(), cpu: cpu[0]?.model, bun: Bun.version },
      options: opts,
      results,
      summary,
      otlpReceiver: exported,
    };
    const dir = join(repoRoot, "bench", "results");
    mkdirSync(dir, { recursive: true });
    const file = join(
      dir,
      `${started
        .toISOString()
        .replace(/:/g, "-")
        .replace(/\.\d+Z$/, "Z")}-observability${opts.smoke ? "-smoke" : ""}.json`,
    );
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    log(`results written to ${file}`);
  } catch (error) {
    exitCode = 1;
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch((e) => log(`cleanup: ${String(e)}`));
  }
  process.exit(exitCode);
}

await main();
