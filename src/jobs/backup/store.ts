// Backup files on disk: one manifest per backup (written last, so a backup without a manifest
// never happened), the data file it names, and the 30-day retention that keeps whole chains.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

export const RETENTION_DAYS = 30;

export interface TableState {
  rows: number;
  /**
   * Sum of the first 64 bits of md5(row text) over all rows: order-free and constant-memory.
   * Every full backup has it; an incremental only when it was asked for (restore-verify's).
   */
  checksum?: string;
}

export interface Manifest {
  format: 1;
  id: string;
  kind: "full" | "incremental";
  engine: "postgres" | "pglite";
  /** When the backup was taken (the host's clock), ISO 8601. */
  createdAt: string;
  /** The id of the full backup this one builds on (itself for a full). */
  chain: string;
  /** The backup an incremental was taken against. */
  parent?: string;
  file: string;
  bytes: number;
  sha256: string;
  /** Postgres: which database the chain belongs to, and the snapshot's oldest running xid. */
  database?: { name: string; oid: string };
  snapshotXmin?: string;
  /**
   * The backup's whole snapshot (pg_current_snapshot()): the next incremental takes exactly the
   * deletions this snapshot did not see. Absent in backups older than the deletion log.
   */
  snapshot?: string;
  /** The oid of the deletion log table: a new one (a restore over the database) breaks the chain. */
  deletionLog?: string;
  serverVersion?: string;
  /** Hash of the tables, columns and keys: an incremental cannot span a schema change. */
  schemaHash?: string;
  /** Every table's state in the backup's snapshot: what a restore of the chain must reproduce. */
  tables: Record<string, TableState>;
  /**
   * Incremental only: per table, the rows written since the parent's snapshot and the keys of
   * rows deleted since then (`truncated`: the table was emptied). Backups older than the
   * deletion log carried every key instead (`keys`), and still restore.
   */
  changes?: Record<string, { rows: number; deleted?: number; truncated?: boolean; keys?: number }>;
}

export const backupId = (at: Date, kind: Manifest["kind"]) => `${at.toISOString().replace(/[:.]/g, "-")}-${kind}`;
const manifestName = (id: string) => `${id}.manifest.json`;

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

export async function ensureBackupDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

/** Finishes a backup: checksums the data file and writes the manifest atomically. */
export async function writeManifest(dir: string, manifest: Omit<Manifest, "bytes" | "sha256">): Promise<Manifest> {
  const path = join(dir, manifest.file);
  const full: Manifest = { ...manifest, bytes: (await stat(path)).size, sha256: await sha256File(path) } as Manifest;
  const target = join(dir, manifestName(manifest.id));
  await writeFile(`${target}.partial`, `${JSON.stringify(full, null, 2)}\n`, { mode: 0o600 });
  await rename(`${target}.partial`, target);
  return full;
}

/** Every readable manifest in `dir`, oldest first. */
export async function listManifests(dir: string, engine?: Manifest["engine"]): Promise<Manifest[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const manifests: Manifest[] = [];
  for (const name of names.filter((n) => n.endsWith(".manifest.json"))) {
    try {
      const m = JSON.parse(await readFile(join(dir, name), "utf8")) as Manifest;
      if (m.format === 1 && (!engine || m.engine === engine)) manifests.push(m);
    } catch {
      // An unreadable manifest is not a backup; retention ages it out by its file time.
    }
  }
  return manifests.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
}

/** The newest full backup and the incrementals taken on top of it, in order. */
export function newestChain(manifests: Manifest[]): Manifest[] {
  const full = manifests.filter((m) => m.kind === "full").at(-1);
  if (!full) return [];
  return [full, ...manifests.filter((m) => m.kind === "incremental" && m.chain === full.id)];
}

/**
 * Deletes what is older than `days`, chain by chain: a chain goes only when its newest member
 * is past the cutoff, and the newest chain is never deleted, however old. Leftovers of failed
 * backups (no manifest) go by their file time.
 */
export async function applyRetention(dir: string, now: Date, days = RETENTION_DAYS): Promise<string[]> {
  const cutoff = now.getTime() - days * 86_400_000;
  const manifests = await listManifests(dir);
  const keepChains = new Set<string>();
  for (const engine of ["postgres", "pglite"] as const) {
    const newest = newestChain(manifests.filter((m) => m.engine === engine))[0];
    if (newest) keepChains.add(newest.id);
  }
  const newestByChain = new Map<string, number>();
  for (const m of manifests) {
    newestByChain.set(m.chain, Math.max(newestByChain.get(m.chain) ?? 0, Date.parse(m.createdAt)));
  }
  const deleted: string[] = [];
  const referenced = new Set<string>();
  for (const m of manifests) {
    const files = [m.file, manifestName(m.id)];
    if (!keepChains.has(m.chain) && (newestByChain.get(m.chain) ?? 0) < cutoff) {
      for (const f of files) {
        await rm(join(dir, f), { force: true });
        deleted.push(f);
      }
    } else {
      for (const f of files) referenced.add(f);
    }
  }
  for (const name of await readdir(dir)) {
    if (referenced.has(name) || deleted.includes(name)) continue;
    const info = await stat(join(dir, name));
    if (info.isFile() && info.mtimeMs < cutoff) {
      await rm(join(dir, name), { force: true });
      deleted.push(name);
    }
  }
  return deleted;
}

/** Table by table, where `actual` differs from what the manifest recorded. */
export function compareTables(expected: Record<string, TableState>, actual: Record<string, TableState>): string[] {
  const problems: string[] = [];
  for (const table of new Set([...Object.keys(expected), ...Object.keys(actual)])) {
    const e = expected[table];
    const a = actual[table];
    if (!e) problems.push(`${table}: present in the restore, absent from the manifest`);
    else if (!a) problems.push(`${table}: missing from the restore`);
    else if (e.rows !== a.rows) problems.push(`${table}: ${a.rows} rows restored, ${e.rows} expected`);
    // An incremental without checksums is checked by its counts; the chain's full and any
    // checksummed member are checked row by row.
    else if (e.checksum !== undefined && e.checksum !== a.checksum) problems.push(`${table}: checksum differs with the same row count`);
  }
  return problems;
}
