// Backups of a Postgres database: pg_dump (custom format) for the full backup, a gzip'd NDJSON
// of changed rows plus every primary key for the incremental, pg_restore + replay to restore.
import { execFile } from "node:child_process";
import { once } from "node:events";
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createGunzip, createGzip } from "node:zlib";
import type { Sql, TransactionSql } from "postgres";
import { backupId, writeManifest, type Manifest, type TableState } from "./store";
import { describeTables, EXCLUDED_TABLES, quoteIdent, schemaHashOf, tableStates, type Query, type TableInfo } from "./tables";

const XID_SPACE = 2n ** 32n;
/** Past this distance (in transaction ids) a chain's base is too old for xmin arithmetic. */
const MAX_XID_DISTANCE = 2n ** 30n;

/** pg_dump/pg_restore: $PG_BIN, then the newest Debian-packaged version, then PATH. */
export function findPgTool(name: "pg_dump" | "pg_restore"): string {
  const dirs = [process.env.PG_BIN, ...["18", "17", "16", "15"].map((v) => `/usr/lib/postgresql/${v}/bin`)];
  for (const dir of dirs) if (dir && existsSync(join(dir, name))) return join(dir, name);
  return name;
}

/** The URL without its password (which goes to the tool's environment, not its argv). */
function splitPassword(url: string): { url: string; password?: string } {
  const u = new URL(url);
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  u.password = "";
  return { url: u.toString(), password };
}

export function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(name)}`;
  return u.toString();
}

function runTool(tool: string, args: string[], url: string): Promise<void> {
  const { url: bare, password } = splitPassword(url);
  return new Promise((resolve, reject) => {
    execFile(
      tool,
      [...args, `--dbname=${bare}`],
      { env: { ...process.env, ...(password ? { PGPASSWORD: password } : {}) }, maxBuffer: 16 * 1024 * 1024 },
      (error, _stdout, stderr) => {
        if (error) reject(new Error(`${tool.split("/").pop()} failed: ${String(stderr).trim().split("\n").slice(-3).join(" | ") || error.message}`));
        else resolve();
      },
    );
  });
}

async function connect(url: string): Promise<Sql> {
  const { default: postgres } = await import("postgres");
  return postgres(url, { max: 1, prepare: false, onnotice: () => {}, connect_timeout: 10 });
}

const queryOf = (sql: Sql | TransactionSql): Query => (text, params) => sql.unsafe(text, (params ?? []) as never[]) as never;

interface SnapshotInfo {
  snapshot: string;
  xmin: string;
  name: string;
  oid: string;
  version: string;
}

/** Opens the backup's repeatable-read snapshot; long statements are expected in it. */
async function openSnapshot(tx: TransactionSql, exportIt: boolean): Promise<SnapshotInfo> {
  await tx.unsafe("set local statement_timeout = 0");
  const [row] = await tx.unsafe<SnapshotInfo[]>(
    `select ${exportIt ? "pg_export_snapshot()" : "''"} as snapshot,
            pg_snapshot_xmin(pg_current_snapshot())::text as xmin,
            current_database() as name,
            (select oid from pg_database where datname = current_database())::text as oid,
            current_setting('server_version') as version`,
  );
  return row;
}

/**
 * pg_dump runs on the snapshot this transaction exports, and the manifest's counts and checksums
 * are taken in the same snapshot, so the manifest describes exactly what the dump holds.
 */
export async function takeFullBackup(url: string, dir: string, now: Date): Promise<Manifest> {
  const id = backupId(now, "full");
  const file = `${id}.dump`;
  const sql = await connect(url);
  try {
    return await sql.begin("isolation level repeatable read read only", async (tx) => {
      const snap = await openSnapshot(tx, true);
      const query = queryOf(tx);
      const described = await describeTables(query);
      const tables = await tableStates(query, described);
      const partial = join(dir, `${file}.partial`);
      await runTool(
        findPgTool("pg_dump"),
        ["--format=custom", `--snapshot=${snap.snapshot}`, `--file=${partial}`, ...EXCLUDED_TABLES.map((t) => `--exclude-table-data=${t}`)],
        url,
      ).catch(async (error) => {
        await rm(partial, { force: true });
        throw error;
      });
      await rename(partial, join(dir, file));
      return writeManifest(dir, {
        format: 1,
        id,
        kind: "full",
        engine: "postgres",
        createdAt: now.toISOString(),
        chain: id,
        file,
        database: { name: snap.name, oid: snap.oid },
        snapshotXmin: snap.xmin,
        serverVersion: snap.version,
        schemaHash: schemaHashOf(described),
        tables,
      });
    });
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Why an incremental cannot build on `parent` (then a full backup is taken instead). */
function chainBreak(parent: Manifest, snap: SnapshotInfo): string | undefined {
  if (!parent.snapshotXmin || !parent.database) return "the previous backup has no snapshot position";
  if (parent.database.oid !== snap.oid || parent.database.name !== snap.name) return "the database is not the one the chain was taken from";
  const distance = BigInt(snap.xmin) - BigInt(parent.snapshotXmin);
  if (distance < 0n) return "the database's transaction ids went backwards (restored or replaced?)";
  if (distance > MAX_XID_DISTANCE) return "too many transactions since the previous backup";
  return undefined;
}

async function write(out: NodeJS.WritableStream, text: string) {
  if (!out.write(text)) await once(out, "drain");
}

/**
 * Rows whose current version was written by a transaction that was not finished before the
 * parent backup's snapshot (xmin at or after the parent's snapshot xmin), plus the complete
 * primary-key list of every table so that the restore can replay deletions. xmin is used
 * rather than updated_at because it moves on every write, whatever the code sets.
 */
export async function takeIncrementalBackup(
  url: string,
  dir: string,
  now: Date,
  parent: Manifest,
): Promise<Manifest | { chainBroken: string }> {
  const id = backupId(now, "incremental");
  const file = `${id}.ndjson.gz`;
  const sql = await connect(url);
  try {
    return await sql.begin("isolation level repeatable read read only", async (tx) => {
      const snap = await openSnapshot(tx, false);
      const query = queryOf(tx);
      const tables = await describeTables(query);
      const broken = chainBreak(parent, snap) ?? (parent.schemaHash === schemaHashOf(tables) ? undefined : "the schema changed since the previous backup");
      if (broken) return { chainBroken: broken };
      const sinceXid = (BigInt(parent.snapshotXmin!) % XID_SPACE).toString();
      const partial = join(dir, `${file}.partial`);
      const gzip = createGzip();
      const sink = createWriteStream(partial, { mode: 0o600 });
      const finished = once(sink, "close");
      gzip.pipe(sink);
      const changes: Record<string, { rows: number; keys: number }> = {};
      try {
        for (const t of tables) {
          const name = quoteIdent(t.name);
          const c = { rows: 0, keys: 0 };
          const changed = tx.unsafe(`select row_to_json(t)::text as j from ${name} t where age(t.xmin) <= age($1::text::xid)`, [sinceXid]);
          for await (const batch of changed.cursor(2000)) {
            await write(gzip, batch.map((r) => `${t.name}\tR\t${r.j}\n`).join(""));
            c.rows += batch.length;
          }
          const pk = t.primaryKey.map((col) => `'${col.replace(/'/g, "''")}', t.${quoteIdent(col)}`).join(", ");
          for await (const batch of tx.unsafe(`select json_build_object(${pk})::text as j from ${name} t`).cursor(5000)) {
            await write(gzip, batch.map((r) => `${t.name}\tK\t${r.j}\n`).join(""));
            c.keys += batch.length;
          }
          changes[t.name] = c;
        }
        gzip.end();
        await finished;
      } catch (error) {
        gzip.destroy();
        await rm(partial, { force: true });
        throw error;
      }
      const states = await tableStates(query, tables);
      await rename(partial, join(dir, file));
      return writeManifest(dir, {
        format: 1,
        id,
        kind: "incremental",
        engine: "postgres",
        createdAt: now.toISOString(),
        chain: parent.chain,
        parent: parent.id,
        file,
        database: { name: snap.name, oid: snap.oid },
        snapshotXmin: snap.xmin,
        serverVersion: snap.version,
        schemaHash: schemaHashOf(tables),
        tables: states,
        changes,
      });
    });
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Applies one incremental file to a restored database, in one transaction. */
async function applyIncremental(sql: Sql, path: string): Promise<void> {
  await sql.begin(async (tx) => {
    await tx.unsafe("set local statement_timeout = 0");
    const query = queryOf(tx);
    const tables = await describeTables(query);
    const byName = new Map(tables.map((t) => [t.name, t]));
    const seen = new Set<string>();
    const pending = new Map<string, string[]>();
    const stage = (t: TableInfo) => {
      if (seen.has(t.name)) return;
      seen.add(t.name);
      return Promise.all([
        tx.unsafe(`create temp table ${quoteIdent(`_k_${t.name}`)} on commit drop as select ${t.primaryKey.map(quoteIdent).join(", ")} from ${quoteIdent(t.name)} with no data`),
        tx.unsafe(`create temp table ${quoteIdent(`_r_${t.name}`)} (like ${quoteIdent(t.name)}) on commit drop`),
      ]);
    };
    const flush = async (key: string) => {
      const lines = pending.get(key);
      if (!lines?.length) return;
      pending.set(key, []);
      const [table, kind] = key.split("\t");
      const t = byName.get(table)!;
      const target = quoteIdent(`${kind === "K" ? "_k_" : "_r_"}${table}`);
      const cols = kind === "K" ? t.primaryKey.map(quoteIdent).join(", ") : "*";
      await tx.unsafe(`insert into ${target} select ${cols} from json_populate_recordset(null::${quoteIdent(table)}, $1::text::json)`, [`[${lines.join(",")}]`]);
    };
    const lines = createInterface({ input: createReadStream(path).pipe(createGunzip()), crlfDelay: Infinity });
    for await (const line of lines) {
      if (!line) continue;
      const first = line.indexOf("\t");
      const table = line.slice(0, first);
      const kind = line.slice(first + 1, first + 2);
      const t = byName.get(table);
      if (!t || (kind !== "K" && kind !== "R")) throw new Error(`incremental ${path}: unknown table or record kind in "${line.slice(0, 40)}"`);
      await stage(t);
      const key = `${table}\t${kind}`;
      const batch = pending.get(key) ?? [];
      batch.push(line.slice(first + 3));
      pending.set(key, batch);
      if (batch.length >= 5000) await flush(key);
    }
    for (const key of pending.keys()) await flush(key);
    const missing = tables.filter((t) => !seen.has(t.name));
    // A table with no rows at all has no lines: its key list is empty, so all its rows go.
    for (const t of missing) await stage(t);
    // Deletions first, children before parents; then upserts, parents before children.
    // Temp tables have no statistics until analysed; the anti-joins below need them.
    for (const t of tables) await tx.unsafe(`analyze ${quoteIdent(`_k_${t.name}`)}`);
    for (const t of [...tables].reverse()) {
      const match = t.primaryKey.map((c) => `k.${quoteIdent(c)} = t.${quoteIdent(c)}`).join(" and ");
      await tx.unsafe(`delete from ${quoteIdent(t.name)} t where not exists (select 1 from ${quoteIdent(`_k_${t.name}`)} k where ${match})`);
    }
    for (const t of tables) {
      const rest = t.columns.filter((c) => !t.primaryKey.includes(c));
      const onConflict = rest.length
        ? `do update set ${rest.map((c) => `${quoteIdent(c)} = excluded.${quoteIdent(c)}`).join(", ")}`
        : "do nothing";
      await tx.unsafe(
        `insert into ${quoteIdent(t.name)} select * from ${quoteIdent(`_r_${t.name}`)} on conflict (${t.primaryKey.map(quoteIdent).join(", ")}) ${onConflict}`,
      );
    }
  });
}

export interface RestoreResult {
  scratchDatabase: string;
  tables: Record<string, TableState>;
}

/**
 * Restores a chain (full first) into a new database on the same server, measures it, and drops
 * it again unless `keep` (tests compare it with the source).
 */
export async function restoreChain(url: string, dir: string, chain: Manifest[], now: Date, keep = false): Promise<RestoreResult> {
  const scratch = `restore_verify_${now.getTime().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = await connect(url);
  await admin.unsafe(`create database ${quoteIdent(scratch)}`);
  const scratchUrl = withDatabase(url, scratch);
  let target: Sql | undefined;
  try {
    const [full, ...incrementals] = chain;
    await runTool(findPgTool("pg_restore"), ["--exit-on-error", "--no-owner", "--no-privileges", join(dir, full.file)], scratchUrl);
    target = await connect(scratchUrl);
    for (const inc of incrementals) await applyIncremental(target, join(dir, inc.file));
    const query = queryOf(target);
    const tables = await tableStates(query, await describeTables(query));
    return { scratchDatabase: scratch, tables };
  } finally {
    await target?.end({ timeout: 5 });
    if (!keep) await admin.unsafe(`drop database if exists ${quoteIdent(scratch)} with (force)`).catch(() => {});
    await admin.end({ timeout: 5 });
  }
}

/** Drops a scratch database kept by `restoreChain(..., keep)`. */
export async function dropScratch(url: string, name: string): Promise<void> {
  const admin = await connect(url);
  try {
    await admin.unsafe(`drop database if exists ${quoteIdent(name)} with (force)`);
  } finally {
    await admin.end({ timeout: 5 });
  }
}
