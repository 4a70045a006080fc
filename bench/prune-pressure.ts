// Does pruning a million expired sessions show in the shop's latency? products.byId p99 under a
// light load (4 connections in a loop) against the real service (src/server.ts on PgBouncer),
// idle, while prune-sessions runs, and in the minute after.
//
//   npm run bench:prune -- [--sessions=1000000] [--variants=job,batch=1000:pause=50,...] [--idle=30] [--after=60]
//
// A variant is `job` (the real job: `npm run job -- prune-sessions`, its own process, the
// shipped constants) or `batch=N[:pause=MS][:vacuum]` (pruneExpiredSessions with those values in
// a child process; `vacuum` adds a VACUUM of sessions and session_chains at the end). Each variant
// gets the same freshly loaded sessions (v4 ids, each with its session_chains row, 100,000 live
// ones beside them), then VACUUM ANALYZE and a CHECKPOINT, then: idle window, prune, after window.
// The probe records every request's latency, so each window's p99 is exact; autovacuum workers on
// the sessions tables are sampled every second to explain an after-effect.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { createPostgresDatabase } from "../src/db/client";
import { runMigrations } from "../src/db/migrate";
import { pruneExpiredSessions } from "../src/services/sessions";
import { startCluster } from "./lib/cluster";
import { freePort, runCommand, startServer } from "./lib/proc";

const args = new Map(
  process.argv.slice(2).map((a) => {
    const [k, ...v] = a.replace(/^--/, "").split("=");
    return [k, v.length ? v.join("=") : "true"] as const;
  }),
);
const repoRoot = join(import.meta.dir, "..");
const log = (msg: string) => process.stderr.write(`${msg}\n`);
const bun = process.execPath;

if (args.has("child")) {
  // One prune with the given knobs, on the pooled URL like the job; prints its report as JSON.
  const handle = await createPostgresDatabase({ url: process.env.DATABASE_URL!, poolMax: 2, prepare: false });
  const started = performance.now();
  const r = await pruneExpiredSessions(handle.db, new Date(), Number(args.get("batch")), Number(args.get("pause") ?? 0));
  if (args.has("vacuum")) {
    await handle.sql!.unsafe("vacuum sessions").simple();
    await handle.sql!.unsafe("vacuum session_chains").simple();
  }
  console.log(JSON.stringify({ ...r, seconds: (performance.now() - started) / 1000 }));
  await handle.close();
  process.exit(0);
}

const SESSIONS = Number(args.get("sessions") ?? 1_000_000);
const LIVE = Math.max(1, Math.round(SESSIONS / 10));
const USERS = 100_000;
const IDLE_S = Number(args.get("idle") ?? 30);
const AFTER_S = Number(args.get("after") ?? 60);
const CONNECTIONS = 4;
const variants = (args.get("variants") ?? "job").split(",");

interface Sample {
  at: number;
  ms: number;
  ok: boolean;
}

function stats(samples: Sample[]) {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  const q = (p: number) => (ms.length ? ms[Math.min(ms.length - 1, Math.floor(p * ms.length))] : NaN);
  return { n: ms.length, errors: samples.filter((s) => !s.ok).length, p50: q(0.5), p99: q(0.99), max: ms.at(-1) ?? NaN };
}

async function loadSessions(sql: postgres.Sql) {
  await sql.unsafe("truncate sessions, session_chains");
  await sql.begin(async (tx) => {
    // Foreign keys hold by construction; their per-row triggers would make the load the bench.
    await tx.unsafe("set local session_replication_role = replica");
    await tx.unsafe(`insert into sessions (id, user_id, token_hash, expires_at, created_at)
      select gen_random_uuid(), u.id, md5(g::text) || md5((g + 1)::text),
             now() at time zone 'utc' + case when g <= ${SESSIONS} then -interval '1 minute' - (g % 43200) * interval '1 minute'
                                              else interval '1 day' end,
             now() at time zone 'utc' - interval '31 days' + (g % 43200) * interval '1 minute'
        from (select g, 1 + floor(random() * ${USERS})::int as un from generate_series(1, ${SESSIONS + LIVE}) g) s
        join bench_users u on u.n = s.un`);
    await tx.unsafe("insert into session_chains (session_id, started_at) select id, created_at from sessions");
  });
  await sql.unsafe("vacuum analyze sessions, session_chains");
  await sql.unsafe("checkpoint");
}

async function main() {
  const cluster = await startCluster({}, log);
  let service: Awaited<ReturnType<typeof startServer>> | undefined;
  const cleanup = async () => {
    await service?.stop();
    await cluster.down();
  };
  process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));
  try {
    const handle = await createPostgresDatabase({ url: cluster.directUrl, poolMax: 2, prepare: false });
    await runMigrations(handle.db);
    await handle.close();
    const sql = postgres(cluster.directUrl, { max: 2, prepare: false, onnotice: () => {} });
    await sql.unsafe(`insert into users (email, password_hash, created_at, updated_at)
      select 'u' || g || '@example.com', 'x', now(), now() from generate_series(1, ${USERS}) g`);
    await sql.unsafe("create table bench_users as select row_number() over () as n, id from users");
    await sql.unsafe("create unique index on bench_users (n)");
    await sql.unsafe(`insert into products (name, price, stock, created_at, updated_at)
      select 'p' || g, 9.99, 100, now(), now() from generate_series(1, 1000) g`);
    const productIds = (await sql.unsafe<{ id: string }[]>("select id from products")).map((r) => r.id);

    const port = await freePort();
    const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
    const env = {
      DATABASE_URL: cluster.pooledUrl,
      DATABASE_PREPARE: "false",
      JWT_SECRET: secret,
      HOST: "127.0.0.1",
      PORT: String(port),
      JOBS: "false",
      SEED: "false",
      LOG_LEVEL: "warn",
      NODE_ENV: "production",
      PATH: process.env.PATH,
      HOME: process.env.HOME,
    };
    service = await startServer({
      name: "service",
      cmd: [bun, "src/server.ts"],
      env,
      port,
      healthPath: "/health",
      logFile: join(cluster.dir, "service.log"),
      cwd: repoRoot,
    });
    const paths = productIds.map((id) => `${service!.url}/trpc/products.byId?input=${encodeURIComponent(JSON.stringify({ id }))}`);

    // The probe: 4 requests in flight at all times, every latency kept.
    const samples: Sample[] = [];
    let probing = true;
    const loop = async () => {
      while (probing) {
        const t0 = performance.now();
        let ok = false;
        try {
          const res = await fetch(paths[Math.floor(Math.random() * paths.length)]);
          await res.arrayBuffer();
          ok = res.ok;
        } catch {
          ok = false;
        }
        samples.push({ at: t0, ms: performance.now() - t0, ok });
      }
    };

    const out: string[] = [];
    out.push(`# prune-sessions under load (${new Date().toISOString().slice(0, 16)}Z)\n`);
    out.push(`Command: \`npm run bench:prune -- ${process.argv.slice(2).join(" ")}\``);
    out.push(
      `${SESSIONS.toLocaleString("en")} expired + ${LIVE.toLocaleString("en")} live sessions (v4 ids, each with a session_chains row) over ` +
        `${USERS.toLocaleString("en")} users; products.byId on ${CONNECTIONS} connections against src/server.ts on PgBouncer; ` +
        `idle ${IDLE_S} s, after ${AFTER_S} s. Latencies in ms.\n`,
    );
    out.push(
      "| variant | prune s | batches | idle p50 / p99 | during p50 / p99 / max | after p50 / p99 / max | during p99 ÷ idle | after p99 ÷ idle | worst 10 s p99 after | autovacuum on sessions (s after prune) |",
    );
    out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");

    for (const variant of variants) {
      log(`variant ${variant}: loading sessions`);
      await loadSessions(sql);
      // `avdelay=MS`: autovacuum's cost delay on the two session tables (storage parameter), to
      // try pacing the vacuum that follows the prune; absent, the server's default.
      const avdelay = variant
        .split(":")
        .find((kv) => kv.startsWith("avdelay="))
        ?.slice("avdelay=".length);
      for (const table of ["sessions", "session_chains"]) {
        await sql.unsafe(
          avdelay === undefined
            ? `alter table ${table} reset (autovacuum_vacuum_cost_delay)`
            : `alter table ${table} set (autovacuum_vacuum_cost_delay = ${Number(avdelay)})`,
        );
      }
      samples.length = 0;
      probing = true;
      const loops = Array.from({ length: CONNECTIONS }, loop);
      // Warm-up (JIT, pools) is not measured.
      await Bun.sleep(5_000);
      const idleFrom = performance.now();
      await Bun.sleep(IDLE_S * 1000);
      const [{ vac: vacBefore }] = await sql.unsafe<{ vac: number }[]>(
        "select autovacuum_count::int as vac from pg_stat_user_tables where relname = 'sessions'",
      );
      const pruneFrom = performance.now();
      const cmd =
        variant.split(":")[0] === "job"
          ? [bun, "src/cli.ts", "job", "prune-sessions"]
          : [
              bun,
              "bench/prune-pressure.ts",
              "--child",
              ...variant
                .split(":")
                .filter((kv) => !kv.startsWith("avdelay="))
                .map((kv) => `--${kv}`),
            ];
      const pruned = await runCommand(cmd, { cwd: repoRoot, env });
      const pruneTo = performance.now();
      if (pruned.code !== 0) throw new Error(`prune failed (${variant}):\n${pruned.stdout}\n${pruned.stderr}`);
      const report = JSON.parse(pruned.stdout.trim().split("\n").at(-1)!) as {
        sessionsDeleted?: number;
        deleted?: number;
        sessionBatches?: number;
        batches?: number;
      };
      // Autovacuum on the sessions tables after the prune, sampled each second.
      const vacuumSeen: number[] = [];
      const afterTo = pruneTo + AFTER_S * 1000;
      while (performance.now() < afterTo) {
        const [{ n }] = await sql.unsafe<{ n: number }[]>(
          `select count(*)::int as n from pg_stat_activity where backend_type = 'autovacuum worker' and query ilike '%session%'`,
        );
        if (n > 0) vacuumSeen.push(Math.round((performance.now() - pruneTo) / 1000));
        await Bun.sleep(1000);
      }
      probing = false;
      await Promise.all(loops);
      const within = (from: number, to: number) => samples.filter((s) => s.at >= from && s.at < to);
      const idle = stats(within(idleFrom, pruneFrom));
      const during = stats(within(pruneFrom, pruneTo));
      const after = stats(within(pruneTo, afterTo));
      let worst = 0;
      for (let t = pruneTo; t < afterTo; t += 10_000) worst = Math.max(worst, stats(within(t, t + 10_000)).p99 || 0);
      const [tbl] = await sql.unsafe<{ vac: number; dead: number }[]>(
        "select autovacuum_count::int as vac, n_dead_tup::int as dead from pg_stat_user_tables where relname = 'sessions'",
      );
      const deleted = report.sessionsDeleted ?? report.deleted;
      const line =
        `| ${variant} | ${((pruneTo - pruneFrom) / 1000).toFixed(1)} | ${report.sessionBatches ?? report.batches} | ` +
        `${idle.p50.toFixed(2)} / ${idle.p99.toFixed(2)} | ${during.p50.toFixed(2)} / ${during.p99.toFixed(2)} / ${during.max.toFixed(0)} | ` +
        `${after.p50.toFixed(2)} / ${after.p99.toFixed(2)} / ${after.max.toFixed(0)} | ${(during.p99 / idle.p99).toFixed(2)} | ` +
        `${(after.p99 / idle.p99).toFixed(2)} | ${worst.toFixed(2)} | ${vacuumSeen.length ? `${vacuumSeen[0]}–${vacuumSeen.at(-1)} (${tbl.vac - vacBefore} runs, ${tbl.dead} dead left)` : `none seen (${tbl.dead} dead left)`} |`;
      log(
        `  ${line}  [${deleted} deleted; ${idle.n}/${during.n}/${after.n} requests, ${idle.errors + during.errors + after.errors} errors]`,
      );
      out.push(line);
    }
    await sql.end();
    const text = `${out.join("\n")}\n`;
    process.stdout.write(text);
    if (args.has("out")) writeFileSync(args.get("out")!, text);
  } finally {
    await cleanup();
  }
}

await main();
