// Backups of a Postgres database: pg_dump (custom format) for the full backup, a gzip'd NDJSON
// of changed rows plus the deletion log's keys for the incremental, pg_restore + replay to restore.
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createGunzip, createGzip } from "node:zlib";
import type { Sql, TransactionSql } from "postgres";
import { backupId, compareTables, type Manifest, type TableState, writeManifest } from "./store";
import {
  DELETION_LOG,
  describeTables,
  EXCLUDED_TABLES,
  type Query,
  qualified,
  quoteIdent,
  schemaHashOf,
  type TableInfo,
  tableStates,
  untrackedTables,
} from "./tables";

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
  /** pg_current_snapshot() as text (xmin:xmax:running xids), 64-bit ids. */
  current: string;
  xmin: string;
  name: string;
  oid: string;
  version: string;
  /** The deletion log's table oid; null on a database migrated before 0007. */
  log: string | null;
  /** The newest prune horizon (a row of the log with an empty table name), if any. */
  horizon: string | null;
}

/** Opens the backup's repeatable-read snapshot; long statements are expected in it. */
async function openSnapshot(tx: TransactionSql, exportIt: boolean): Promise<SnapshotInfo> {
  await tx.unsafe("set local statement_timeout = 0");
  const [row] = await tx.unsafe<SnapshotInfo[]>(
    `select ${exportIt ? "pg_export_snapshot()" : "''"} as snapshot,
            pg_current_snapshot()::text as current,
            pg_snapshot_xmin(pg_current_snapshot())::text as xmin,
            current_database() as name,
            (select oid from pg_database where datname = current_database())::text as oid,
            current_setting('server_version') as version,
            to_regclass('public.${DELETION_LOG}')::oid::text as log`,
  );
  row.horizon = null;
  if (row.log) {
    const [h] = await tx.unsafe<{ xid: string }[]>(
      `select xid::text as xid from ${qualified(DELETION_LOG)} where table_name = '' order by xid desc limit 1`,
    );
    row.horizon = h?.xid ?? null;
  }
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
        ...(snap.log ? { snapshot: snap.current, deletionLog: snap.log } : {}),
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
  if (!snap.log) return "the database has no deletion log (backup_deletions): run the migrations";
  if (!parent.snapshot || !parent.deletionLog) return "the previous backup predates the deletion log";
  if (parent.deletionLog !== snap.log) return "the deletion log was recreated since the previous backup (a restore over this database?)";
  // Deletions the parent did not see may have been pruned (after a newer backup that is gone now).
  if (snap.horizon && BigInt(parent.snapshotXmin) < BigInt(snap.horizon))
    return "deletions since the previous backup were pruned after a newer backup (removed from BACKUP_DIR?)";
  return undefined;
}

async function write(out: NodeJS.WritableStream, text: string) {
  if (!out.write(text)) await once(out, "drain");
}

type Changes = NonNullable<Manifest["changes"]>;

/**
 * Writes gzip'd NDJSON inside the caller's snapshot: each table's rows (`R`), all of them or
 * only those written since `since.xid`; with `since`, also the deletions the parent's snapshot
 * did not see (`D`: a JSON array of keys; `T`: the table was truncated), from the deletion log.
 */
async function writeRowsFile(tx: TransactionSql, tables: TableInfo[], partial: string, since?: { xid: string; parent: Manifest }) {
  const gzip = createGzip();
  const sink = createWriteStream(partial, { mode: 0o600 });
  const finished = once(sink, "close");
  gzip.pipe(sink);
  const changes: Changes = {};
  try {
    for (const t of tables) {
      const name = qualified(t.name);
      const c: Changes[string] = { rows: 0, deleted: 0 };
      // One sequential scan that reads only each row's xmin; only changed rows become JSON.
      const rows =
        since === undefined
          ? tx.unsafe(`select row_to_json(t)::text as j from ${name} t`)
          : tx.unsafe(`select row_to_json(t)::text as j from ${name} t where age(t.xmin) <= age($1::text::xid)`, [since.xid]);
      for await (const batch of rows.cursor(2000)) {
        await write(gzip, batch.map((r) => `${t.name}\tR\t${r.j}\n`).join(""));
        c.rows += batch.length;
      }
      changes[t.name] = c;
    }
    if (since) {
      // Exactly the deleting transactions the parent's snapshot did not see and this one does:
      // one committed after this snapshot is the next incremental's, none is taken twice.
      // Those below the parent's xmin were finished before it, so it saw them.
      const known = new Set(tables.map((t) => t.name));
      const log = tx.unsafe(
        `select table_name as t, keys::text as k, coalesce(jsonb_array_length(keys), 0) as n from ${qualified(DELETION_LOG)}
          where table_name <> '' and xid >= $1::text::xid8 and not pg_visible_in_snapshot(xid, $2::text::pg_snapshot)
          order by id`,
        [since.parent.snapshotXmin!, since.parent.snapshot!],
      );
      for await (const batch of log.cursor(500)) {
        const lines: string[] = [];
        for (const d of batch as unknown as { t: string; k: string | null; n: number }[]) {
          // A table that is no longer backed up (dropped) would have broken the chain by its schema.
          if (!known.has(d.t)) continue;
          const c = changes[d.t]!;
          if (d.k === null) {
            c.truncated = true;
            lines.push(`${d.t}\tT\t\n`);
          } else {
            c.deleted = (c.deleted ?? 0) + Number(d.n);
            lines.push(`${d.t}\tD\t${d.k}\n`);
          }
        }
        await write(gzip, lines.join(""));
      }
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
 * parent backup's snapshot (xmin at or after the parent's snapshot xmin), plus the keys the
 * deletion log holds for transactions the parent's snapshot did not see. xmin is used rather
 * than updated_at because it moves on every write, whatever the code sets, and on tables that
 * have no updated_at. Counts every table; checksums too only with `checksums` (restore-verify).
 */
export async function takeIncrementalBackup(
  url: string,
  dir: string,
  now: Date,
  parent: Manifest,
  opts: { checksums?: boolean } = {},
): Promise<Manifest | { chainBroken: string }> {
  const id = backupId(now, "incremental");
  const file = `${id}.ndjson.gz`;
  const sql = await connect(url);
  try {
    return await sql.begin("isolation level repeatable read read only", async (tx) => {
      const snap = await openSnapshot(tx, false);
      const query = queryOf(tx);
      const tables = await describeTables(query);
      const untracked = snap.log ? await untrackedTables(query, tables) : [];
      const broken =
        chainBreak(parent, snap) ??
        (parent.schemaHash === schemaHashOf(tables) ? undefined : "the schema changed since the previous backup") ??
        (untracked.length
          ? `deletions from ${untracked.join(", ")} are not logged (trigger missing or disabled; see docs/operations.md, "Backups")`
          : undefined);
      if (broken) return { chainBroken: broken };
      const sinceXid = (BigInt(parent.snapshotXmin!) % XID_SPACE).toString();
      const partial = join(dir, `${file}.partial`);
      const changes = await writeRowsFile(tx, tables, partial, { xid: sinceXid, parent });
      const states = await tableStates(query, tables, opts.checksums ?? false);
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
        snapshot: snap.current,
        deletionLog: snap.log!,
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
 * a restored database, in one transaction that leaves no session state behind: deletions first
 * (children before parents), then upserts (parents before children). A key deleted and written
 * again since the parent is in both, and ends as written. Files from before the deletion log
 * carry every key (`K`) instead of deletions; for them, rows missing from the list go.
 */
export async function applyRowsFile(sql: Sql, path: string): Promise<void> {
  await sql.begin(async (tx) => {
    await tx.unsafe("set local statement_timeout = 0");
    const query = queryOf(tx);
    const tables = await describeTables(query);
    const byName = new Map(tables.map((t) => [t.name, t]));
    const staged = new Set<string>();
    const truncated = new Set<string>();
    let everyKey = false;
    const temp = (kind: string, table: string) => `pg_temp.${quoteIdent(`_${kind.toLowerCase()}_${table}`)}`;
    const stage = async (t: TableInfo, kind: "R" | "K" | "D") => {
      const key = `${t.name}\t${kind}`;
      if (staged.has(key)) return;
      staged.add(key);
      const target = quoteIdent(`_${kind.toLowerCase()}_${t.name}`);
      await tx.unsafe(
        kind === "R"
          ? `create temp table ${target} (like ${qualified(t.name)}) on commit drop`
          : `create temp table ${target} on commit drop as select ${t.primaryKey.map(quoteIdent).join(", ")} from ${qualified(t.name)} with no data`,
      );
    };
    const pending = new Map<string, string[]>();
    const flush = async (key: string) => {
      const lines = pending.get(key);
      if (!lines?.length) return;
      pending.set(key, []);
      const [table, kind] = key.split("\t");
      const t = byName.get(table)!;
      const pk = t.primaryKey.map(quoteIdent).join(", ");
      const payload = `[${lines.join(",")}]`;
      if (kind === "D")
        // Each line is one deleting statement's array of keys.
        await tx.unsafe(
          `insert into ${temp("D", table)} select ${t.primaryKey.map((c) => `r.${quoteIdent(c)}`).join(", ")}
             from json_array_elements($1::text::json) a cross join lateral json_populate_recordset(null::${qualified(table)}, a) r`,
          [payload],
        );
      else
        await tx.unsafe(
          `insert into ${temp(kind, table)} select ${kind === "K" ? pk : "*"} from json_populate_recordset(null::${qualified(table)}, $1::text::json)`,
          [payload],
        );
    };
    const lines = createInterface({ input: createReadStream(path).pipe(createGunzip()), crlfDelay: Infinity });
    for await (const line of lines) {
      if (!line) continue;
      const first = line.indexOf("\t");
      const table = line.slice(0, first);
      const kind = line.slice(first + 1, first + 2);
      const t = byName.get(table);
      if (!t || !["R", "K", "D", "T"].includes(kind))
        throw new Error(`rows file ${path}: unknown table or record kind in "${line.slice(0, 40)}"`);
      if (kind === "T") {
        truncated.add(table);
        continue;
      }
      if (kind === "K") everyKey = true;
      await stage(t, kind as "R" | "K" | "D");
      const key = `${table}\t${kind}`;
      const batch = pending.get(key) ?? [];
      batch.push(line.slice(first + 3));
      pending.set(key, batch);
      if (batch.length >= (kind === "D" ? 50 : 5000)) await flush(key);
    }
    for (const key of pending.keys()) await flush(key);
    // Temp tables have no statistics until analysed; the joins below need them.
    for (const key of staged) {
      const [table, kind] = key.split("\t");
      if (kind !== "R") await tx.unsafe(`analyze ${temp(kind, table)}`);
    }
    for (const t of [...tables].reverse()) {
      const match = t.primaryKey.map((c) => `k.${quoteIdent(c)} = t.${quoteIdent(c)}`).join(" and ");
      if (truncated.has(t.name)) await tx.unsafe(`delete from ${qualified(t.name)}`);
      else if (staged.has(`${t.name}\tD`))
        await tx.unsafe(`delete from ${qualified(t.name)} t where exists (select 1 from ${temp("D", t.name)} k where ${match})`);
      if (everyKey) {
        // A table with no rows at all had no key lines: all its rows go.
        await stage(t, "K");
        await tx.unsafe(`delete from ${qualified(t.name)} t where not exists (select 1 from ${temp("K", t.name)} k where ${match})`);
      }
    }
    for (const t of tables) {
      if (!staged.has(`${t.name}\tR`)) continue;
      const rest = t.columns.filter((c) => !t.primaryKey.includes(c));
      const onConflict = rest.length
        ? `do update set ${rest.map((c) => `${quoteIdent(c)} = excluded.${quoteIdent(c)}`).join(", ")}`
        : "do nothing";
      await tx.unsafe(
        `insert into ${qualified(t.name)} select * from ${temp("R", t.name)} on conflict (${t.primaryKey.map(quoteIdent).join(", ")}) ${onConflict}`,
      );
    }
    // The replay's own deletions were logged by the target's triggers: they describe no change
    // of the source, and the target starts its own chains with a full backup.
    const [log] = await tx.unsafe<{ log: string | null }[]>(`select to_regclass('public.${DELETION_LOG}')::text as log`);
    if (log?.log) await tx.unsafe(`delete from ${qualified(DELETION_LOG)} where xid = pg_current_xact_id()`);
  });
}

/**
 * Drops the deletion log's entries that no future incremental needs: each one builds on the
 * newest backup, whose snapshot saw every deletion below its xmin (`horizon`). The horizon is
 * kept as a row with an empty table name, so an incremental on an older parent (the newer
 * backups removed by hand) sees that its deletions are gone and takes a full backup instead.
 */
export async function pruneDeletionLog(url: string, horizon: string): Promise<number> {
  const sql = await connect(url);
  try {
    return await sql.begin(async (tx) => {
      const log = qualified(DELETION_LOG);
      const [exists] = await tx.unsafe<{ log: string | null }[]>(`select to_regclass('public.${DELETION_LOG}')::text as log`);
      if (!exists?.log) return 0;
      const [old] = await tx.unsafe<{ xid: string }[]>(
        `select xid::text as xid from ${log} where table_name = '' order by xid desc limit 1`,
      );
      // Never lower the horizon (a slower backup finishing after a newer one).
      const h = old && BigInt(old.xid) > BigInt(horizon) ? old.xid : horizon;
      const deleted = await tx.unsafe(`delete from ${log} where xid < $1::text::xid8 and table_name <> ''`, [h]);
      await tx.unsafe(`delete from ${log} where table_name = ''`);
      await tx.unsafe(`insert into ${log} (table_name, keys, xid) values ('', null, $1::text::xid8)`, [h]);
      return deleted.count;
    });
  } finally {
    await sql.end({ timeout: 5 });
  }
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

export interface RestoredChain {
  /** Every table's state after the last step (checksums when its manifest has them). */
  tables: Record<string, TableState>;
  /** Where a step differs from its manifest, each line naming the backup. */
  problems: string[];
}

/**
 * Restores a chain (full first, then each incremental) into the database at `targetUrl`,
 * checking each step against its manifest: after the full, every table's count and checksum;
 * after each incremental, its counts, and its checksums when it has them (so the chain's end is
 * checked row by row when it is restore-verify's checkpoint). Each step is one transaction and
 * uses no session state, so the target may be reached through a transaction-mode pooler. A
 * target that already holds tables is refused unless `force`, which empties it first (in the
 * same transaction as the full restore).
 */
export async function restoreInto(
  targetUrl: string,
  dir: string,
  chain: Manifest[],
  opts: { force?: boolean } = {},
): Promise<RestoredChain> {
  const [full, ...incrementals] = chain;
  if (full?.kind !== "full") throw new Error("a restore needs a full backup first");
  const target = await connect(targetUrl);
  try {
    if ((await userRelations(target)) > 0 && !opts.force) {
      throw new RestoreTargetNotEmptyError(
        "the target database is not empty: restore into a new, empty database, or pass --force to replace its contents",
      );
    }
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
    const query = queryOf(target);
    const described = await describeTables(query);
    const hash = schemaHashOf(described);
    if (full.schemaHash && hash !== full.schemaHash) {
      throw new Error("the restored schema differs from the backup's: restore with the release that took the backup");
    }
    const problems: string[] = [];
    const check = (m: Manifest, tables: Record<string, TableState>) => {
      for (const p of compareTables(m.tables, tables)) problems.push(`${m.id}: ${p}`);
    };
    if (!full.file.endsWith(".dump")) await applyRowsFile(target, join(dir, full.file));
    let tables = await tableStates(query, described);
    check(full, tables);
    for (const m of incrementals) {
      await applyRowsFile(target, join(dir, m.file));
      // Checksumming a restored table reads all of it: only where there is one to compare with.
      tables = await tableStates(
        query,
        described,
        Object.values(m.tables).some((t) => t.checksum !== undefined),
      );
      check(m, tables);
    }
    return { tables, problems };
  } finally {
    await target.end({ timeout: 5 });
  }
}

/** Creates the schema with this release's migrations, inside the caller's transaction. */
async function migrateIn(tx: TransactionSql): Promise<void> {
  const { applyMigrationsToEmpty } = await import("../../db/migrate");
  await applyMigrationsToEmpty((text, params) => tx.unsafe(text, (params ?? []) as never[]));
}

export interface RestoreResult extends RestoredChain {
  scratchDatabase: string;
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
    return { scratchDatabase: scratch, ...(await restoreInto(withDatabase(url, scratch), dir, chain)) };
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
