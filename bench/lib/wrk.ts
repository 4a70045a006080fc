// wrk, the load generator: one Lua script per scenario drives the service and the baseline alike.
import { join } from "node:path";
import { runCommand } from "./proc";

export const WRK_DIR = join(import.meta.dir, "..", "wrk");

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Non-2xx answers plus socket errors and timeouts. */
  errors: number;
  errorDetail: { connect: number; read: number; write: number; status: number; timeout: number };
  /** CPU the load generator itself spent per request (µs), from its rusage. */
  wrkCpuUsPerRequest: number;
}

/** Installs wrk from Debian's packages when missing, as .ci/pg.sh does for Postgres. */
export async function ensureWrk(log: (msg: string) => void): Promise<void> {
  if (Bun.which("wrk")) return;
  if (process.getuid?.() !== 0) throw new Error("wrk is not installed: apt-get install -y wrk (or run the benchmark as root)");
  log("installing wrk from Debian packages");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  let r = await runCommand(["apt-get", "install", "-y", "-qq", "wrk"], { env });
  if (r.code !== 0) {
    await runCommand(["apt-get", "update", "-qq"], { env });
    r = await runCommand(["apt-get", "install", "-y", "-qq", "wrk"], { env });
  }
  if (r.code !== 0 || !Bun.which("wrk")) throw new Error(`could not install wrk:\n${r.stderr}`);
}

export async function runWrk(opts: {
  url: string;
  script: string;
  connections: number;
  threads: number;
  seconds: number;
  dataDir: string;
}): Promise<WrkResult> {
  const cmd = [
    "wrk",
    `-t${opts.threads}`,
    `-c${opts.connections}`,
    `-d${opts.seconds}s`,
    "--timeout",
    "10s",
    "-s",
    join(WRK_DIR, opts.script),
    opts.url,
  ];
  const r = await runCommand(cmd, { env: { ...process.env, BENCH_WRK_DIR: WRK_DIR, BENCH_DATA_DIR: opts.dataDir } });
  const line = r.stdout.split("\n").find((l) => l.startsWith("BENCH_JSON "));
  if (r.code !== 0 || !line) throw new Error(`wrk failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  const j = JSON.parse(line.slice("BENCH_JSON ".length)) as Record<string, number>;
  const seconds = j.duration_us / 1e6;
  const errorDetail = { connect: j.connect, read: j.read, write: j.write, status: j.status, timeout: j.timeout };
  return {
    requests: j.requests,
    seconds,
    rps: j.requests / seconds,
    p50Ms: j.p50_us / 1000,
    p90Ms: j.p90_us / 1000,
    p99Ms: j.p99_us / 1000,
    maxMs: j.max_us / 1000,
    errors: errorDetail.connect + errorDetail.read + errorDetail.write + errorDetail.status + errorDetail.timeout,
    errorDetail,
    wrkCpuUsPerRequest: r.cpuUs / Math.max(1, j.requests),
  };
}
