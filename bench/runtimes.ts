// npm run bench:runtimes -- [--duration=S] [--rounds=N] [--smoke]
//
// products.list and products.byId req/s of the Deno host (src/deno.ts) beside the Bun host
// (src/server.ts): the same database through PgBouncer, the same wrk scripts as bench/run.ts,
// one run, rounds alternating between the two hosts so that drift on a shared machine hits both.
// A figure for comparison, not a target. Writes bench/results/<date>-deno.md (not with --smoke).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPostgresDatabase } from "../src/db/client";
import { runMigrations } from "../src/db/migrate";
import { loadProducts } from "./lib/load";
import { openBenchDatabase } from "./lib/postgres";
import { cpuTicks, freePort, type Server, sleep, startServer, TICK_US } from "./lib/proc";
import { ensureWrk, runWrk } from "./lib/wrk";

const arg = (name: string, fallback: number) => {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? Number(hit.split("=")[1]) : fallback;
};
const smoke = process.argv.includes("--smoke");
const seconds = smoke ? 2 : arg("duration", 10);
const rounds = smoke ? 1 : arg("rounds", 3);
const CONNECTIONS = 64; // as bench/run.ts's list and byId scenarios
const repoRoot = join(import.meta.dir, "..");
const log = (msg: string) => console.log(`[runtimes] ${msg}`);

const SCENARIOS = { list: "list.lua", byId: "by-id.lua" } as const;
type Name = keyof typeof SCENARIOS;
type Host = "bun" | "deno";
interface Run {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  cpuUsPerRequest: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  await ensureWrk(log);
  const dataDir = mkdtempSync(join(tmpdir(), "bench-runtimes-"));
  const db = await openBenchDatabase(log);
  const servers: Server[] = [];
  try {
    const handle = await createPostgresDatabase({ url: db.directUrl, poolMax: 4, prepare: false });
    await runMigrations(handle.db);
    const productIds = await loadProducts(handle.db, smoke ? 200 : 2_000, 1_000_000);
    await handle.close();
    writeFileSync(join(dataDir, "product-ids.txt"), `${productIds.join("\n")}\n`);

    const env = {
      DATABASE_URL: db.pooledUrl,
      DATABASE_PREPARE: "false",
      DATABASE_POOL_MAX: "10",
      JWT_SECRET: Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url"),
      HOST: "127.0.0.1",
      JOBS: "false",
      SEED: "false",
      LOG_LEVEL: "warn",
      NODE_ENV: "production",
      NO_COLOR: "1",
      DATA_DIR: join(dataDir, "data"),
      PATH: process.env.PATH,
      HOME: process.env.HOME,
    };
    const [bunPort, denoPort] = [await freePort(), await freePort()];
    const bun = await startServer({
      name: "bun",
      cmd: [process.execPath, "run", "src/server.ts"],
      env: { ...env, PORT: String(bunPort) },
      port: bunPort,
      healthPath: "/health",
      logFile: join(dataDir, "bun.log"),
      cwd: repoRoot,
    });
    servers.push(bun);
    // deno itself (not through npm), so its pid is the one whose CPU is counted; the permissions
    // are `npm run start:deno`'s.
    const deno = await startServer({
      name: "deno",
      cmd: [
        join(repoRoot, "node_modules/.bin/deno"),
        "run",
        "--allow-net=127.0.0.1",
        `--allow-read=.,${env.DATA_DIR},/usr/bin/ldd`,
        `--allow-write=${env.DATA_DIR}`,
        "--allow-env",
        "--allow-ffi=node_modules",
        "src/deno.ts",
      ],
      env: { ...env, PORT: String(denoPort) },
      port: denoPort,
      healthPath: "/health",
      logFile: join(dataDir, "deno.log"),
      cwd: repoRoot,
      timeoutMs: 60_000,
    });
    servers.push(deno);
    const hosts: Record<Host, Server> = { bun, deno };
    const version = async (cmd: string[]) => (await new Response(Bun.spawn(cmd, { stdout: "pipe" }).stdout).text()).split("\n")[0].trim();
    const versions = { bun: `bun ${Bun.version}`, deno: await version([join(repoRoot, "node_modules/.bin/deno"), "--version"]) };
    log(`${versions.bun} at ${bun.url}, ${versions.deno} at ${deno.url}; ${productIds.length} products`);

    const runs: Record<Name, Record<Host, Run[]>> = { list: { bun: [], deno: [] }, byId: { bun: [], deno: [] } };
    for (const name of Object.keys(SCENARIOS) as Name[]) {
      // Warm-up: JIT and connection pools, not measured.
      for (const h of ["bun", "deno"] as Host[]) {
        await runWrk({ url: hosts[h].url, script: SCENARIOS[name], connections: CONNECTIONS, threads: 1, seconds: smoke ? 1 : 3, dataDir });
      }
      for (let r = 0; r < rounds; r++) {
        const order: Host[] = r % 2 === 0 ? ["bun", "deno"] : ["deno", "bun"];
        for (const h of order) {
          const server = hosts[h];
          const t0 = cpuTicks(server.proc.pid) ?? NaN;
          const w = await runWrk({ url: server.url, script: SCENARIOS[name], connections: CONNECTIONS, threads: 1, seconds, dataDir });
          await sleep(300);
          const t1 = cpuTicks(server.proc.pid) ?? NaN;
          const run = {
            rps: w.rps,
            p50Ms: w.p50Ms,
            p99Ms: w.p99Ms,
            errors: w.errors,
            cpuUsPerRequest: ((t1 - t0) * TICK_US) / Math.max(1, w.requests),
          };
          runs[name][h].push(run);
          log(
            `${name} ${h} round ${r + 1}: ${run.rps.toFixed(0)} req/s, p50 ${run.p50Ms.toFixed(2)} ms, p99 ${run.p99Ms.toFixed(2)} ms, ${run.errors} errors, ${run.cpuUsPerRequest.toFixed(0)} µs CPU/request`,
          );
        }
      }
    }

    const lines = [
      `# Deno host beside the Bun host: products.list and products.byId`,
      ``,
      `Measured ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC with \`npm run bench:runtimes -- --duration=${seconds} --rounds=${rounds}\``,
      `(bench/runtimes.ts): ${versions.bun} and ${versions.deno}, both through PgBouncer (transaction mode) to one Postgres 15`,
      `database of ${productIds.length} products, wrk with ${CONNECTIONS} connections and bench/wrk/list.lua and by-id.lua,`,
      `${rounds} round(s) of ${seconds} s per host, alternating which host goes first; each column the median of its rounds.`,
      `Everything (both hosts, Postgres, PgBouncer, wrk) shares one machine of ${navigator.hardwareConcurrency} cores with other work, so`,
      `the ratio is the figure to read, not the absolute req/s. A figure, not a target.`,
      ``,
      `| procedure | host | req/s | p50 ms | p99 ms | errors | server CPU µs/request | req/s vs Bun |`,
      `|---|---|---:|---:|---:|---:|---:|---:|`,
    ];
    for (const name of Object.keys(SCENARIOS) as Name[]) {
      const bunRps = median(runs[name].bun.map((r) => r.rps));
      for (const h of ["bun", "deno"] as Host[]) {
        const rs = runs[name][h];
        const rps = median(rs.map((r) => r.rps));
        lines.push(
          `| products.${name} | ${h} | ${rps.toFixed(0)} | ${median(rs.map((r) => r.p50Ms)).toFixed(2)} | ${median(rs.map((r) => r.p99Ms)).toFixed(2)} | ${rs.reduce((n, r) => n + r.errors, 0)} | ${median(rs.map((r) => r.cpuUsPerRequest)).toFixed(0)} | ${(rps / bunRps).toFixed(2)} |`,
        );
      }
    }
    const report = `${lines.join("\n")}\n`;
    console.log(`\n${report}`);
    if (!smoke) {
      const file = join(repoRoot, "bench/results", `${new Date().toISOString().slice(0, 10)}-deno.md`);
      writeFileSync(file, report);
      log(`written ${file}`);
    }
    const errors = Object.values(runs)
      .flatMap((byHost) => Object.values(byHost).flat())
      .reduce((n, r) => n + r.errors, 0);
    if (errors > 0) {
      log(`${errors} non-2xx answers or socket errors: see ${dataDir}/*.log`);
      process.exitCode = 1;
    }
  } finally {
    for (const s of servers) await s.stop();
    await db.teardown();
    if (process.exitCode !== 1) rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
