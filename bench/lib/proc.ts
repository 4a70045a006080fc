// Child processes, ports and /proc readings for the harness (Linux only: the figures come from /proc).

import { openSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import type { Subprocess } from "bun";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** utime + stime of a process in clock ticks (USER_HZ, 100 on Linux), or undefined once it is gone. */
export function cpuTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces; the fields after it are fixed.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}
export const TICK_US = 10_000;

function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/**
 * CPU ticks of a process and all its children, the exited ones included (cutime/cstime): for
 * Postgres, the postmaster's pid covers every backend.
 */
export function treeCpuTicks(rootPid: number): number {
  const root = statFields(rootPid);
  if (!root) return NaN;
  // utime, stime, cutime, cstime are fields 14–17; ppid is field 4 (indexes 11–14 and 1 here).
  const all = (f: string[]) => Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  let total = all(root);
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(Number(entry));
    if (f && Number(f[1]) === rootPid) total += all(f);
  }
  return total;
}

/** VmRSS and VmHWM (peak resident set) in kB. */
export function memoryOf(pid: number): { rssKb: number; hwmKb: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
    return { rssKb: kb("VmRSS"), hwmKb: kb("VmHWM") };
  } catch {
    return undefined;
  }
}

export interface Server {
  name: string;
  url: string;
  proc: Subprocess;
  logFile: string;
  stop(): Promise<void>;
}

/** Starts a long-running server, waits until `healthPath` answers 200, or fails with its log's tail. */
export async function startServer(opts: {
  name: string;
  cmd: string[];
  env: Record<string, string | undefined>;
  port: number;
  healthPath: string;
  logFile: string;
  cwd: string;
  timeoutMs?: number;
}): Promise<Server> {
  const fd = openSync(opts.logFile, "a");
  const proc = Bun.spawn(opts.cmd, { cwd: opts.cwd, env: opts.env, stdout: fd, stderr: fd, stdin: "ignore" });
  const url = `http://127.0.0.1:${opts.port}`;
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`${opts.name} exited during start-up (code ${proc.exitCode}):\n${tail(opts.logFile)}`);
    }
    try {
      const res = await fetch(url + opts.healthPath);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill();
      throw new Error(`${opts.name} did not become healthy in time:\n${tail(opts.logFile)}`);
    }
    await sleep(100);
  }
  return {
    name: opts.name,
    url,
    proc,
    logFile: opts.logFile,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await proc.exited;
      clearTimeout(timer);
    },
  };
}

export function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** Runs a command to completion; returns stdout, stderr, exit code and CPU time used (µs). */
export async function runCommand(
  cmd: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string; cpuUs: number }> {
  const proc = Bun.spawn(cmd, { cwd: opts.cwd, env: opts.env ?? process.env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const usage = proc.resourceUsage();
  const cpuUs = usage ? Number(usage.cpuTime.user) + Number(usage.cpuTime.system) : NaN;
  return { code, stdout, stderr, cpuUs };
}

/** A one-line progress bar on stderr (only when stderr is a terminal, else a line per 10 %). */
export function progressBar(label: string, total: number) {
  const started = performance.now();
  const tty = process.stderr.isTTY;
  let lastDecile = -1;
  return {
    update(done: number) {
      const frac = total === 0 ? 1 : done / total;
      const secs = (performance.now() - started) / 1000;
      const rate = done / Math.max(secs, 0.001);
      const eta = rate > 0 ? (total - done) / rate : 0;
      if (tty) {
        const width = 30;
        const filled = Math.round(frac * width);
        process.stderr.write(
          `\r  ${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done.toLocaleString("en")}/${total.toLocaleString("en")} ` +
            `${Math.round(rate).toLocaleString("en")}/s eta ${eta.toFixed(0)}s   `,
        );
      } else {
        const decile = Math.floor(frac * 10);
        if (decile !== lastDecile) {
          lastDecile = decile;
          process.stderr.write(
            `  ${label} ${Math.round(frac * 100)}% (${done.toLocaleString("en")}/${total.toLocaleString("en")}, ${secs.toFixed(1)}s)\n`,
          );
        }
      }
    },
    finish() {
      if (tty) process.stderr.write("\n");
      return (performance.now() - started) / 1000;
    },
  };
}
