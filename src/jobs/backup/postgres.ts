// Backups of a Postgres database: pg_dump (custom format) for the full backup, a gzip'd NDJSON
// of changed rows plus every primary key for the incremental, pg_restore + replay to restore.
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createGunzip, createGzip } from "node:zlib";
import type { Sql, TransactionSql } from "postgres";
import { backupId, type Manifest, type TableState, writeManifest } from "./store";
import { describeTables, EXCLUDED_TABLES, type Query, qualified, quoteIdent, schemaHashOf, type TableInfo, tableStates } from "./tables";

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
        if (error)
          reject(new Error(`${tool.split("/").pop()} failed: ${String(stderr).trim().split("\n").slice(-3).join(" | ") || error.message}`));
        else resolve();
      },
    );
  });
}

async function connect(url: string): Promise<Sql> {
  const { default: postgres } = await import("postgres");
  return postgres(url, { max: 1, prepare: false, onnotice: () => {}, connect_timeout: 10 });
}

const queryOf =
  (sql: Sql | TransactionSql): Query =>
  (text, params) =>
    sql.unsafe(text, (params ?? []) as never[]) as never;

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
 * The full backup, in one repeatable-read snapshot whose counts and checksums go into the
 * manifest. With a direct connection (`dumpUrl`, DATABASE_DIRECT_URL) pg_dump writes it from
 * that snapshot. Without one it is a rows file written on this transaction: pg_dump sets
 * session state (search_path, statement_timeout) before its own transaction begins, on whatever
 * server connection a transaction-mode pooler lends it then, where the next client may find it.
 */
export async function takeFullBackup(url: string, dir: string, now: Date, dumpUrl?: string): Promise<Manifest> {
  const id = backupId(now, "full");
  const file = dumpUrl ? `${id}.dump` : `${id}.rows.ndjson.gz`;
  const sql = await connect(dumpUrl ?? url);
  try {
    return await sql.begin("isolation level repeatable read read only", async (tx) => {
      const snap = await openSnapshot(tx, Boolean(dumpUrl));
      const query = queryOf(tx);
      const described = await describeTables(query);
      const tables = await tableStates(query, described);
      const partial = join(dir, `${file}.partial`);
      if (dumpUrl) {
        await runTool(
          findPgTool("pg_dump"),
          [
            "--format=custom",
            `--snapshot=${snap.snapshot}`,
            `--file=${partial}`,
            ...EXCLUDED_TABLES.map((t) => `--exclude-table-data=${t}`),
          ],
          dumpUrl,
        ).catch(async (error) => {
          await rm(partial, { force: true });
          throw error;
        });
      } else {
        await writeRowsFile(tx, described, partial);
      }
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
 * Writes, gzip'd NDJSON, each table's rows (all of them, or those written since `sinceXid`) and
 * every primary key (so a replay can delete what is gone). Runs inside the caller's snapshot.
 */
async function writeRowsFile(tx: TransactionSql, tables: TableInfo[], partial: string, sinceXid?: string) {
  const gzip = createGzip();
  const sink = createWriteStream(partial, { mode: 0o600 });
  const finished = once(sink, "close");
  gzip.pipe(sink);
  const changes: Record<string, { rows: number; keys: number }> = {};
  try {
    for (const t of tables) {
      const name = qualified(t.name);
      const c = { rows: 0, keys: 0 };
      const rows =
        sinceXid === undefined
          ? tx.unsafe(`select row_to_json(t)::text as j from ${name} t`)
          : tx.unsafe(`select row_to_json(t)::text as j from ${name} t where age(t.xmin) <= age($1::text::xid)`, [sinceXid]);
      for await (const batch of rows.cursor(2000)) {
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
  return changes;
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
      const broken =
        chainBreak(parent, snap) ??
        (parent.schemaHash === schemaHashOf(tables) ? undefined : "the schema changed since the previous backup");
      if (broken) return { chainBroken: broken };
      const sinceXid = (BigInt(parent.snapshotXmin!) % XID_SPACE).toString();
      const partial = join(dir, `${file}.partial`);
      const changes = await writeRowsFile(tx, tables, partial, sinceXid);
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

/**
 * Applies one rows file (an incremental, or a full backup taken without a direct connection) to
 * a restored database, in one transaction that leaves no session state behind.
 */
export async function applyRowsFile(sql: Sql, path: string): Promise<void> {
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
        tx.unsafe(
          `create temp table ${quoteIdent(`_k_${t.name}`)} on commit drop as select ${t.primaryKey.map(quoteIdent).join(", ")} from ${qualified(t.name)} with no data`,
        ),
        tx.unsafe(`create temp table ${quoteIdent(`_r_${t.name}`)} (like ${qualified(t.name)}) on commit drop`),
      ]);
    };
    const flush = async (key: string) => {
      const lines = pending.get(key);
      if (!lines?.length) return;
      pending.set(key, []);
      const [table, kind] = key.split("\t");
      const t = byName.get(table)!;
      const target = `pg_temp.${quoteIdent(`${kind === "K" ? "_k_" : "_r_"}${table}`)}`;
      const cols = kind === "K" ? t.primaryKey.map(quoteIdent).join(", ") : "*";
      await tx.unsafe(`insert into ${target} select ${cols} from json_populate_recordset(null::${qualified(table)}, $1::text::json)`, [
        `[${lines.join(",")}]`,
      ]);
    };
    const lines = createInterface({ input: createReadStream(path).pipe(createGunzip()), crlfDelay: Infinity });
    for await (const line of lines) {
      if (!line) continue;
      const first = line.indexOf("\t");
      const table = line.slice(0, first);
      const kind = line.slice(first + 1, first + 2);
      const t = byName.get(table);
      if (!t || (kind !== "K" && kind !== "R"))
        throw new Error(`incremental ${path}: unknown table or record kind in "${line.slice(0, 40)}"`);
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
    for (const t of tables) await tx.unsafe(`analyze pg_temp.${quoteIdent(`_k_${t.name}`)}`);
    for (const t of [...tables].reverse()) {
      const match = t.primaryKey.map((c) => `k.${quoteIdent(c)} = t.${quoteIdent(c)}`).join(" and ");
      await tx.unsafe(
        `delete from ${qualified(t.name)} t where not exists (select 1 from pg_temp.${quoteIdent(`_k_${t.name}`)} k where ${match})`,
      );
    }
    for (const t of tables) {
      const rest = t.columns.filter((c) => !t.primaryKey.includes(c));
      const onConflict = rest.length
        ? `do update set ${rest.map((c) => `${quoteIdent(c)} = excluded.${quoteIdent(c)}`).join(", ")}`
        : "do nothing";
      await tx.unsafe(
        `insert into ${qualified(t.name)} select * from pg_temp.${quoteIdent(`_r_${t.name}`)} on conflict (${t.primaryKey.map(quoteIdent).join(", ")}) ${onConflict}`,
      );
    }
  });
}

/** The target of a restore already holds tables (refused unless forced). */
export class RestoreTargetNotEmptyError extends Error {
  override name = "RestoreTargetNotEmptyError";
}

/** Relations outside the system schemas: an empty database has none. */
async function userRelations(sql: Sql): Promise<number> {
  const [row] = await sql.unsafe<{ n: string }[]>(
    `select count(*)::text as n from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
        and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%'`,
  );
  return Number(row.n);
}

/**
 * A pg_restore script made safe for one transaction on a pooled connection: every session-level
 * setting it makes becomes transaction-local, so it ends with the transaction instead of
 * staying on a server connection that the pooler then lends to another client.
 */
export function localiseSettings(statement: string): string {
  return statement.replace(/^SET (?!LOCAL )(\w+)/gm, "SET LOCAL $1").replace(/(set_config\('[^']+', '[^']*', )false\)/g, "$1true)");
}

/**
 * Runs a pg_dump archive into the database behind `tx`: pg_restore only converts it to SQL (it
 * never connects), and the script runs on this transaction, COPY blocks included.
 */
async function runDumpScript(tx: TransactionSql, file: string): Promise<void> {
  const child = spawn(findPgTool("pg_restore"), ["--no-owner", "--no-privileges", "--file=-", file], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c.slice(0, 4000)));
  const exited = new Promise<number>((resolve) => child.on("close", (code) => resolve(code ?? 1)));
  const lines = createInterface({ input: child.stdout, crlfDelay: Infinity });
  let statements: string[] = [];
  let copy: { writable: import("node:stream").Writable; done: Promise<void> } | undefined;
  const flush = async () => {
    const text = statements.join("\n").trim();
    statements = [];
    if (text) await tx.unsafe(localiseSettings(text)).simple();
  };
  for await (const line of lines) {
    if (copy) {
      if (line === "\\.") {
        copy.writable.end();
        await copy.done;
        copy = undefined;
      } else if (!copy.writable.write(`${line}\n`)) await once(copy.writable, "drain");
      continue;
    }
    // psql meta-commands: recent pg_restore fences its scripts with \restrict / \unrestrict,
    // which guard psql against a hostile dump and mean nothing to the server.
    if (/^\\(restrict|unrestrict)\b/.test(line)) continue;
    if (line.startsWith("\\")) throw new Error(`pg_restore script: unexpected meta-command ${line.split(" ")[0]}`);
    if (/^COPY .+ FROM stdin;$/.test(line)) {
      await flush();
      const writable = await tx.unsafe(line.slice(0, -1)).writable();
      copy = { writable, done: new Promise((resolve, reject) => writable.on("finish", resolve).on("error", reject)) };
      continue;
    }
    statements.push(line);
  }
  await flush();
  if ((await exited) !== 0) throw new Error(`pg_restore failed: ${stderr.trim().split("\n").slice(-3).join(" | ")}`);
}

/**
 * Restores a chain (full first, then each incremental) into the database at `targetUrl`, and
 * measures every table. Each step is one transaction and uses no session state, so the target
 * may be reached through a transaction-mode pooler. A target that already holds tables is
 * refused unless `force`, which empties it first (in the same transaction as the full restore).
 */
export async function restoreInto(
  targetUrl: string,
  dir: string,
  chain: Manifest[],
  opts: { force?: boolean } = {},
): Promise<Record<string, TableState>> {
  const [full, ...incrementals] = chain;
  if (full?.kind !== "full") throw new Error("a restore needs a full backup first");
  const target = await connect(targetUrl);
  try {
    if ((await userRelations(target)) > 0 && !opts.force) {
      throw new RestoreTargetNotEmptyError(
        "the target database is not empty: restore into a new, empty database, or pass --force to replace its contents",
      );
    }
    const rowsFiles = incrementals.map((m) => m.file);
    await target.begin(async (tx) => {
      await tx.unsafe("set local statement_timeout = 0");
      if (opts.force)
        await tx.unsafe("drop schema if exists drizzle cascade; drop schema if exists public cascade; create schema public").simple();
      if (full.file.endsWith(".dump")) await runDumpScript(tx, join(dir, full.file));
      else {
        await tx.unsafe("set local search_path = public");
        await migrateIn(tx);
      }
    });
    if (!full.file.endsWith(".dump")) rowsFiles.unshift(full.file);
    const query = queryOf(target);
    const hash = schemaHashOf(await describeTables(query));
    if (full.schemaHash && hash !== full.schemaHash) {
      throw new Error("the restored schema differs from the backup's: restore with the release that took the backup");
    }
    for (const file of rowsFiles) await applyRowsFile(target, join(dir, file));
    return await tableStates(query, await describeTables(query));
  } finally {
    await target.end({ timeout: 5 });
  }
}

/** Creates the schema with this release's migrations, inside the caller's transaction. */
async function migrateIn(tx: TransactionSql): Promise<void> {
  const { applyMigrationsToEmpty } = await import("../../db/migrate");
  await applyMigrationsToEmpty((text, params) => tx.unsafe(text, (params ?? []) as never[]));
}

export interface RestoreResult {
  scratchDatabase: string;
  tables: Record<string, TableState>;
}

/**
 * Restores a chain into a new database on the same server, measures it, and drops it again
 * unless `keep` (tests compare it with the source).
 */
export async function restoreChain(url: string, dir: string, chain: Manifest[], now: Date, keep = false): Promise<RestoreResult> {
  const scratch = `restore_verify_${now.getTime().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = await connect(url);
  await admin.unsafe(`create database ${quoteIdent(scratch)}`);
  try {
    const tables = await restoreInto(withDatabase(url, scratch), dir, chain);
    return { scratchDatabase: scratch, tables };
  } finally {
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
