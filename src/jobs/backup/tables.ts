// Catalog queries shared by both engines, over a minimal query function so they run on a
// postgres.js transaction, a scratch database or a PGlite instance alike.
import { createHash } from "node:crypto";
import { getTableName } from "drizzle-orm";
import { backupDeletions, jobRuns } from "../../db/schema";
import type { TableState } from "./store";

export type Query = <T extends Record<string, unknown>>(text: string, params?: unknown[]) => Promise<T[]>;

/** The deletion log incrementals read (migrations 0007, 0008). */
export const DELETION_LOG = getTableName(backupDeletions);

/**
 * Not backed up: scheduler bookkeeping (it changes while a backup runs, and a restore does not
 * need it), and the deletion log (it describes the source database's backup chain, not data).
 */
export const EXCLUDED_TABLES: string[] = [getTableName(jobRuns), DELETION_LOG];

export const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;
/**
 * A backed-up table by its full name. Maintenance statements may run on a pooled server
 * connection whose search_path another client changed; qualified names do not depend on it.
 */
export const qualified = (table: string) => `public.${quoteIdent(table)}`;

export interface TableInfo {
  name: string;
  primaryKey: string[];
  columns: string[];
  /** A partitioned table's partitions (`npm run partition-orders`): read and written through it. */
  partitions?: string[];
}

/**
 * The public tables that are backed up, parents before children (by foreign keys). A partition
 * is not one of them: its rows are read, counted and written through its partitioned table (a
 * listing of both would carry them twice), and deletions are logged by the parent's trigger.
 */
export async function describeTables(query: Query): Promise<TableInfo[]> {
  const columns = await query<{ table: string; column: string; pk: number | null }>(
    `select c.relname as "table", a.attname as "column",
            (select k.ord from pg_index i, unnest(i.indkey) with ordinality k(attnum, ord)
              where i.indrelid = c.oid and i.indisprimary and k.attnum = a.attnum)::int as pk
       from pg_class c
       join pg_namespace n on n.oid = c.relnamespace
       join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
      where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition
      order by c.relname, a.attnum`,
  );
  const partitions = await query<{ parent: string; partition: string }>(
    `select p.relname as parent, c.relname as partition
       from pg_inherits i
       join pg_class c on c.oid = i.inhrelid
       join pg_class p on p.oid = i.inhparent
       join pg_namespace n on n.oid = p.relnamespace
      where n.nspname = 'public' and c.relispartition
      order by c.relname`,
  );
  const byName = new Map<string, TableInfo & { pkOrder: [number, string][] }>();
  for (const row of columns) {
    if (EXCLUDED_TABLES.includes(row.table)) continue;
    let t = byName.get(row.table);
    if (!t) {
      t = { name: row.table, primaryKey: [], columns: [], pkOrder: [] };
      byName.set(row.table, t);
    }
    t.columns.push(row.column);
    if (row.pk != null) t.pkOrder.push([Number(row.pk), row.column]);
  }
  for (const t of byName.values()) {
    const own = partitions.filter((p) => p.parent === t.name).map((p) => p.partition);
    if (own.length) t.partitions = own;
  }
  for (const t of byName.values()) {
    t.primaryKey = t.pkOrder.sort((a, b) => a[0] - b[0]).map(([, c]) => c);
    if (t.primaryKey.length === 0) throw new Error(`table ${t.name} has no primary key: incremental backups need one`);
  }
  const edges = await query<{ child: string; parent: string }>(
    `select cc.relname as child, pc.relname as parent
       from pg_constraint f
       join pg_class cc on cc.oid = f.conrelid
       join pg_class pc on pc.oid = f.confrelid
       join pg_namespace n on n.oid = cc.relnamespace
      where f.contype = 'f' and n.nspname = 'public'`,
  );
  // Topological order: a table comes after every table it references.
  const ordered: TableInfo[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string) => {
    if (state.get(name) || !byName.has(name)) return;
    state.set(name, "visiting");
    for (const e of edges) if (e.child === name && e.parent !== name) visit(e.parent);
    state.set(name, "done");
    const { pkOrder: _, ...info } = byName.get(name)!;
    ordered.push(info);
  };
  for (const name of [...byName.keys()].sort()) visit(name);
  return ordered;
}

/**
 * Changes with any migration that adds, drops or reorders tables, columns or keys, and with any
 * partition attached or detached: detaching a partition takes its rows out of the table without
 * a deletion the log could see, so the next backup must be a full one.
 */
export function schemaHashOf(tables: TableInfo[]): string {
  const text = JSON.stringify(
    tables.map((t) => (t.partitions ? [t.name, t.columns, t.primaryKey, t.partitions] : [t.name, t.columns, t.primaryKey])).sort(),
  );
  return createHash("sha256").update(text).digest("hex");
}

/**
 * Row count and (unless `checksums` is false) an order-independent checksum of every table, in
 * the caller's snapshot. The checksum turns every row into text and hashes it: at 10 M orders
 * about 69 s, so an ordinary incremental counts only (see docs/operations.md, "Backups").
 */
export async function tableStates(query: Query, tables: TableInfo[], checksums = true): Promise<Record<string, TableState>> {
  const states: Record<string, TableState> = {};
  for (const t of tables) {
    const [row] = await query<{ rows: string; checksum?: string }>(
      checksums
        ? `select count(*)::text as rows,
                  coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0)::text as checksum
             from ${qualified(t.name)} t`
        : `select count(*)::text as rows from ${qualified(t.name)} t`,
    );
    states[t.name] = checksums ? { rows: Number(row.rows), checksum: row.checksum! } : { rows: Number(row.rows) };
  }
  return states;
}

/**
 * Backed-up tables whose deletions the log would miss: a trigger of migration 0008 absent
 * (a table added without `backup_track_deletions`) or disabled. An incremental on such a
 * database could not replay deletions, so the job takes a full backup instead.
 */
export async function untrackedTables(query: Query, tables: TableInfo[]): Promise<string[]> {
  const rows = await query<{ table: string; n: number }>(
    `select c.relname as "table", count(distinct tg.tgname)::int as n
       from pg_trigger tg
       join pg_class c on c.oid = tg.tgrelid
       join pg_namespace ns on ns.oid = c.relnamespace
      where ns.nspname = 'public' and tg.tgname in ('backup_log_deletes', 'backup_log_truncates')
        and tg.tgenabled in ('O', 'A') and tg.tgfoid = to_regprocedure('public.backup_log_deletions()')
      group by c.relname`,
  );
  const tracked = new Set(rows.filter((r) => Number(r.n) === 2).map((r) => r.table));
  return tables.filter((t) => !tracked.has(t.name)).map((t) => t.name);
}
