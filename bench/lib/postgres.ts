// The database the benchmark runs on: its own Postgres 15 + PgBouncer (.ci/pg.sh), or the server
// at BENCH_DATABASE_URL. Either way every run gets a fresh database, dropped at the end.

import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { freePort, runCommand, treeCpuTicks } from "./proc";

export interface BenchDatabase {
  /** Through PgBouncer (transaction mode): what the service, the baseline and pgbench use. */
  pooledUrl: string;
  /** Straight to Postgres: migrations, bulk loads, EXPLAIN, pg_stat_statements. */
  directUrl: string;
  name: string;
  /** True when the harness started Postgres and PgBouncer itself. */
  ownServer: boolean;
  /** CPU ticks used so far by Postgres (every backend) and PgBouncer; only when ownServer. */
  serverCpuTicks(): { postgres: number; pgbouncer: number } | undefined;
  teardown(): Promise<void>;
}

const repoRoot = join(import.meta.dir, "..", "..");

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

export async function openBenchDatabase(log: (msg: string) => void): Promise<BenchDatabase> {
  let pooled = process.env.BENCH_DATABASE_URL;
  let direct = process.env.BENCH_DIRECT_DATABASE_URL ?? pooled;
  let stopServer = async () => {};
  let ownServer = false;
  let serverCpuTicks: BenchDatabase["serverCpuTicks"] = () => undefined;
  if (!pooled || !direct) {
    const dir = mkdtempSync(join(tmpdir(), "bench-pg-"));
    const [pgPort, bouncerPort] = [await freePort(), await freePort()];
    log(`starting Postgres 15 on ${pgPort} and PgBouncer on ${bouncerPort} (.ci/pg.sh, ${dir})`);
    const up = await runCommand(["bash", "-c", `source .ci/pg.sh; pg_up '${dir}' ${pgPort} ${bouncerPort}`], { cwd: repoRoot });
    if (up.code !== 0) throw new Error(`pg_up failed:\n${up.stdout}\n${up.stderr}`);
    pooled = `postgres://postgres@127.0.0.1:${bouncerPort}/postgres`;
    direct = `postgres://postgres@127.0.0.1:${pgPort}/postgres`;
    ownServer = true;
    const pidOf = (file: string) => Number(readFileSync(join(dir, file), "utf8").split("\n")[0]);
    const postmaster = pidOf("pgdata/postmaster.pid");
    const bouncer = pidOf("pgbouncer.pid");
    serverCpuTicks = () => ({ postgres: treeCpuTicks(postmaster), pgbouncer: treeCpuTicks(bouncer) });
    stopServer = async () => {
      await runCommand(["bash", "-c", `source .ci/pg.sh; pg_down '${dir}'; rm -rf '${dir}'`], { cwd: repoRoot });
    };
  }
  const name = `bench_${Date.now().toString(36)}_${process.pid}`;
  const admin = postgres(direct, { max: 1, prepare: false, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const directUrl = withDatabase(direct, name);
  const pooledUrl = withDatabase(pooled, name);
  return {
    pooledUrl,
    directUrl,
    name,
    ownServer,
    serverCpuTicks,
    async teardown() {
      const a = postgres(direct!, { max: 1, prepare: false, onnotice: () => {} });
      try {
        // PgBouncer still holds server connections to it; FORCE ends them.
        await a.unsafe(`drop database if exists ${name} with (force)`);
      } catch (error) {
        log(`could not drop ${name}: ${error instanceof Error ? error.message : String(error)}`);
      } finally {
        await a.end();
      }
      await stopServer();
    },
  };
}

/** Statement counts per queryid in one database; needs pg_stat_statements preloaded (.ci/pg.sh does). */
export type StatementSnapshot = Map<string, { calls: number; ms: number; query: string }>;

export async function enableStatementStats(sql: postgres.Sql): Promise<boolean> {
  try {
    await sql.unsafe("create extension if not exists pg_stat_statements");
    await sql.unsafe("select 1 from pg_stat_statements limit 1");
    return true;
  } catch {
    return false;
  }
}

// The harness's own statements carry this marker so they can be left out of the counts.
export const HARNESS_MARK = "/* bench-harness */";

export async function snapshotStatements(sql: postgres.Sql): Promise<StatementSnapshot> {
  const rows = await sql.unsafe<{ queryid: string; calls: string; ms: string; query: string }[]>(
    `${HARNESS_MARK} select queryid::text as queryid, sum(calls)::text as calls, sum(total_exec_time)::text as ms, min(query) as query
       from pg_stat_statements s join pg_database d on d.oid = s.dbid
      where d.datname = current_database() and query not like '%bench-harness%'
        -- Connection set-up (postgres.js sets application_name and reads array types once per
        -- connection) is not per-request work.
        and query not ilike 'set %' and query not like '%pg_catalog.%'
      group by queryid`,
  );
  return new Map(rows.map((r) => [r.queryid, { calls: Number(r.calls), ms: Number(r.ms), query: r.query }]));
}

export interface StatementDelta {
  queryid: string;
  calls: number;
  /** Mean execution time inside Postgres (pg_stat_statements total_exec_time / calls). */
  meanMs: number;
  query: string;
}

export function diffStatements(before: StatementSnapshot, after: StatementSnapshot): StatementDelta[] {
  const out: StatementDelta[] = [];
  for (const [queryid, a] of after) {
    const calls = a.calls - (before.get(queryid)?.calls ?? 0);
    const ms = a.ms - (before.get(queryid)?.ms ?? 0);
    if (calls > 0) out.push({ queryid, calls, meanMs: Math.round((ms / calls) * 1000) / 1000, query: a.query.replace(/\s+/g, " ").trim() });
  }
  return out.sort((x, y) => y.calls - x.calls);
}
