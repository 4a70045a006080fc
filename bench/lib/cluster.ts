// A throwaway Postgres 15 + PgBouncer of the measurement's own (.ci/pg.sh), with server settings
// the measurement needs (ALTER SYSTEM, then a restart: shared_buffers needs one). For scripts
// that must control the server's memory, which BENCH_DATABASE_URL's server would not let them.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { freePort, runCommand } from "./proc";

export interface OwnCluster {
  directUrl: string;
  pooledUrl: string;
  dir: string;
  /** Changes settings with ALTER SYSTEM and restarts Postgres (PgBouncer reconnects by itself). */
  configure(settings: Record<string, string>): Promise<void>;
  down(): Promise<void>;
}

const repoRoot = join(import.meta.dir, "..", "..");
const PG_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";

export async function startCluster(settings: Record<string, string>, log: (msg: string) => void): Promise<OwnCluster> {
  const dir = mkdtempSync(join(tmpdir(), "bench-pg-"));
  const [pgPort, bouncerPort] = [await freePort(), await freePort()];
  log(`starting Postgres 15 on ${pgPort} and PgBouncer on ${bouncerPort} (.ci/pg.sh, ${dir})`);
  const up = await runCommand(["bash", "-c", `source .ci/pg.sh; pg_up '${dir}' ${pgPort} ${bouncerPort}`], { cwd: repoRoot });
  if (up.code !== 0) throw new Error(`pg_up failed:\n${up.stdout}\n${up.stderr}`);
  const directUrl = `postgres://postgres@127.0.0.1:${pgPort}/postgres`;
  const pooledUrl = `postgres://postgres@127.0.0.1:${bouncerPort}/postgres`;
  const asOwner = (cmd: string) => (process.getuid?.() === 0 ? ["su", "-s", "/bin/bash", "postgres", "-c", cmd] : ["bash", "-c", cmd]);
  const cluster: OwnCluster = {
    directUrl,
    pooledUrl,
    dir,
    async configure(next) {
      const sql = postgres(directUrl, { max: 1, onnotice: () => {} });
      try {
        for (const [name, value] of Object.entries(next)) await sql.unsafe(`alter system set ${name} = '${value}'`);
      } finally {
        await sql.end();
      }
      const r = await runCommand(asOwner(`${PG_BIN}/pg_ctl -D '${dir}/pgdata' -l '${dir}/postgres.log' -m fast -w restart`));
      if (r.code !== 0) throw new Error(`pg_ctl restart failed:\n${r.stdout}\n${r.stderr}`);
    },
    async down() {
      await runCommand(["bash", "-c", `source .ci/pg.sh; pg_down '${dir}'; rm -rf '${dir}'`], { cwd: repoRoot });
    },
  };
  if (Object.keys(settings).length > 0) await cluster.configure(settings);
  return cluster;
}

export function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}
