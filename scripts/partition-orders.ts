// `npm run partition-orders -- --dry-run` prints the plan; without --dry-run it applies it.
// Options: --lock-timeout-ms=N (500), --retries=N (20), --batch=N (20000), --months-ahead=N (3).
// Postgres only, on a direct connection: DATABASE_DIRECT_URL, else DATABASE_URL if it is direct.
// Exit codes: 0 done (or nothing to do), 1 a step failed, 2 refused or bad usage.
import { defaultOptions, PartitionRefusal, partitionOrders, sharesServerSessions } from "../src/db/partition-orders";
import { parseEnvOrExit } from "../src/env";

const USAGE = "usage: npm run partition-orders -- [--dry-run] [--lock-timeout-ms=N] [--retries=N] [--batch=N] [--months-ahead=N]";

const PGLITE_REFUSAL =
  "partition-orders runs on Postgres only: DATABASE_URL is not set, so this configuration uses the embedded PGlite database. " +
  "PGlite is one connection inside one host process: the plan's low-downtime steps (CREATE INDEX CONCURRENTLY, short " +
  "lock_timeout transactions while other sessions keep writing) have nothing to protect there, and an embedded database " +
  "stays far below the 10 million orders where partitioning pays. Move to Postgres (DATABASE_URL) first.";

function parseArgs(argv: string[]) {
  const opts = { ...defaultOptions, dryRun: false };
  const numeric: Record<string, keyof typeof defaultOptions> = {
    "--lock-timeout-ms": "lockTimeoutMs",
    "--retries": "retries",
    "--batch": "batchSize",
    "--months-ahead": "monthsAhead",
  };
  for (const arg of argv) {
    if (arg === "--dry-run") {
      opts.dryRun = true;
      continue;
    }
    const [name, value] = arg.split("=", 2);
    const key = numeric[name];
    const n = Number(value);
    if (!key || value === undefined || !Number.isInteger(n) || n < (key === "monthsAhead" ? 0 : 1) || n > 1_000_000) return undefined;
    opts[key] = n;
  }
  return opts;
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  if (!opts) {
    console.error(USAGE);
    return 2;
  }
  const env = parseEnvOrExit(process.env, { requireJwtSecret: false });
  if (!env.DATABASE_URL && !env.DATABASE_DIRECT_URL) {
    console.error(PGLITE_REFUSAL);
    return 2;
  }
  const name = env.DATABASE_DIRECT_URL ? "DATABASE_DIRECT_URL" : "DATABASE_URL";
  const url = (env.DATABASE_DIRECT_URL ?? env.DATABASE_URL)!;
  try {
    if (await sharesServerSessions(url)) {
      console.error(
        `${name} goes through a transaction-mode pooler (two client connections were served by one server session): ` +
          "partition-orders needs one session for the whole run (a session advisory lock, CREATE INDEX CONCURRENTLY, " +
          "a swap transaction whose ACCESS EXCLUSIVE lock it times). Set DATABASE_DIRECT_URL to the database's direct address.",
      );
      return 2;
    }
    const report = await partitionOrders(url, { ...opts, log: (line) => console.log(line) });
    if (opts.dryRun) {
      console.log(report.plan);
      console.log("\n(dry run: nothing was changed; run without --dry-run to apply)");
      return 0;
    }
    console.log(`partition-orders: ${report.steps.filter((s) => !s.skipped).length} steps in ${report.totalMs} ms`);
    for (const s of report.steps) {
      console.log(`  ${s.skipped ? "skipped" : `${s.ms} ms`.padStart(10)}  ${s.title}${s.details ? ` ${JSON.stringify(s.details)}` : ""}`);
    }
    return 0;
  } catch (error) {
    if (error instanceof PartitionRefusal) {
      console.error(`partition-orders refused: ${error.message}`);
      return 2;
    }
    const e = error as { message?: string; code?: string };
    console.error(
      `partition-orders failed: ${e.message ?? String(error)}${e.code ? ` (SQLSTATE ${e.code})` : ""}; re-run to continue from here`,
    );
    return 1;
  }
}

process.exit(await main());
