// How long a commit on the primary takes to become visible on a streaming replica, measured the
// way a catalog reader meets it: commit a row, then poll the replica for it. For a scratch
// database (it creates and drops a table named replica_lag_probe), e.g. the CI cluster:
//   npm run replica-lag -- postgres://postgres@127.0.0.1:5432/postgres postgres://postgres@127.0.0.1:5433/postgres --commits=300
// Reported for synchronous_commit on (Postgres's default) and off (what .ci/pg.sh runs with: the
// commit's WAL waits for the WAL writer, wal_writer_delay = 200 ms, before it is sent).
import postgres from "postgres";

const args = process.argv.slice(2);
const urls = args.filter((a) => !a.startsWith("--"));
const commits = Number(args.find((a) => a.startsWith("--commits="))?.split("=")[1] ?? 300);
if (urls.length !== 2 || !Number.isInteger(commits) || commits < 1) {
  console.error("usage: npm run replica-lag -- PRIMARY_URL REPLICA_URL [--commits=300]");
  process.exit(2);
}
const [primaryUrl, replicaUrl] = urls as [string, string];
const primary = postgres(primaryUrl, { max: 1, onnotice: () => {} });
const replica = postgres(replicaUrl, { max: 1, onnotice: () => {} });

try {
  const [standby] = await replica`select pg_is_in_recovery() as r`;
  if (!standby?.r) throw new Error("the second URL is not a standby (pg_is_in_recovery() is false)");
  await primary.unsafe("drop table if exists replica_lag_probe; create table replica_lag_probe (id int primary key)");
  // The table itself must have reached the replica before the first poll.
  while ((await replica`select to_regclass('replica_lag_probe') as t`)[0]?.t === null) await Bun.sleep(10);
  let id = 0;
  for (const mode of ["on", "off"]) {
    await primary.unsafe(`set synchronous_commit = ${mode}`);
    const ms: number[] = [];
    for (let i = 0; i < commits; i++) {
      id++;
      await primary`insert into replica_lag_probe values (${id})`;
      const started = performance.now();
      while ((await replica`select 1 from replica_lag_probe where id = ${id}`).length === 0) {}
      ms.push(performance.now() - started);
    }
    ms.sort((a, b) => a - b);
    const at = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))]!.toFixed(2);
    console.log(
      `synchronous_commit=${mode}: ${ms.length} commits, visible on the replica after p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, p99 ${at(0.99)} ms, max ${ms.at(-1)!.toFixed(2)} ms`,
    );
  }
} finally {
  await primary.unsafe("drop table if exists replica_lag_probe").catch(() => {});
  await Promise.all([primary.end(), replica.end()]);
}
