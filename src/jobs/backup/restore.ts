// `npm run restore -- <backup id | latest> [--to <postgres url>] [--force]`: a backup chain
// restored into a database the service can then run on, and checked against its manifest.
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { RestoreTargetNotEmptyError, restoreInto } from "./postgres";
import { compareTables, listManifests, type Manifest, newestChain, sha256File, type TableState } from "./store";
import { describeTables, type Query, tableStates } from "./tables";

export interface RestoreOptions {
  backupDir: string;
  /** A manifest id, or "latest" (the newest chain of the target's engine). */
  backup: string;
  /** A Postgres database (empty unless `force`); absent: the embedded database at `pgdataDir`. */
  targetUrl?: string;
  pgdataDir?: string;
  force?: boolean;
}

export interface RestoreReport {
  ok: boolean;
  chain: string[];
  tables?: Record<string, number>;
  problems?: string[];
}

/** A restore that cannot start; the message is one line saying what to change. */
export class RestoreRefusedError extends Error {
  override name = "RestoreRefusedError";
}

/** The chain that ends at `backup`: its full backup and the incrementals up to it. */
export function chainFor(manifests: Manifest[], backup: string): Manifest[] {
  if (backup === "latest") return newestChain(manifests);
  const last = manifests.find((m) => m.id === backup);
  if (!last) return [];
  // listManifests is oldest first: the chain's members up to and including the one asked for.
  const upTo = manifests.slice(0, manifests.indexOf(last) + 1).filter((m) => m.chain === last.chain);
  const full = upTo.find((m) => m.kind === "full");
  return full ? [full, ...upTo.filter((m) => m.kind === "incremental")] : [];
}

export async function restoreBackup(opts: RestoreOptions): Promise<RestoreReport> {
  const engine = opts.targetUrl ? "postgres" : "pglite";
  const chain = chainFor(await listManifests(opts.backupDir, engine), opts.backup);
  if (chain.length === 0) {
    throw new RestoreRefusedError(
      opts.backup === "latest"
        ? `no ${engine === "postgres" ? "Postgres" : "embedded-database"} backup in BACKUP_DIR ${opts.backupDir}`
        : `no ${engine === "postgres" ? "Postgres" : "embedded-database"} backup with id ${opts.backup.slice(0, 80)} in BACKUP_DIR ${opts.backupDir}`,
    );
  }
  const ids = chain.map((m) => m.id);
  const corrupted: string[] = [];
  for (const m of chain) {
    const actual = await sha256File(join(opts.backupDir, m.file)).catch(() => "missing");
    if (actual !== m.sha256)
      corrupted.push(`${m.file}: ${actual === "missing" ? "missing" : "contents changed since the backup (sha256 differs)"}`);
  }
  if (corrupted.length) return { ok: false, chain: ids, problems: corrupted };

  let tables: Record<string, TableState>;
  let problems: string[];
  if (opts.targetUrl) {
    try {
      // Checked step by step against each backup's manifest (see restoreInto).
      ({ tables, problems } = await restoreInto(opts.targetUrl, opts.backupDir, chain, { force: opts.force }));
    } catch (error) {
      if (error instanceof RestoreTargetNotEmptyError) throw new RestoreRefusedError(error.message);
      throw error;
    }
  } else {
    tables = await restoreEmbedded(opts.pgdataDir!, join(opts.backupDir, chain.at(-1)!.file), opts.force);
    problems = compareTables(chain.at(-1)!.tables, tables);
  }
  return {
    ok: problems.length === 0,
    chain: ids,
    tables: Object.fromEntries(Object.entries(tables).map(([t, s]) => [t, s.rows])),
    ...(problems.length ? { problems } : {}),
  };
}

/** Unpacks an embedded-database tarball into an empty data directory and measures it. */
async function restoreEmbedded(pgdataDir: string, tarball: string, force = false): Promise<Record<string, TableState>> {
  const existing = await readdir(pgdataDir).catch(() => [] as string[]);
  if (existing.length > 0) {
    if (!force)
      throw new RestoreRefusedError(
        `DATA_DIR already holds a database (${pgdataDir}): restore into an empty DATA_DIR, or pass --force to replace it`,
      );
    await rm(pgdataDir, { recursive: true, force: true });
  }
  await mkdir(pgdataDir, { recursive: true, mode: 0o700 });
  const { PGlite } = await import("@electric-sql/pglite");
  const { pg_trgm } = await import("@electric-sql/pglite/contrib/pg_trgm");
  const bytes = await readFile(tarball);
  const pg = await PGlite.create({ dataDir: pgdataDir, loadDataDir: new Blob([bytes]), extensions: { pg_trgm } });
  try {
    const query: Query = async (text, params) => (await pg.query(text, params)).rows as never;
    return await tableStates(query, await describeTables(query));
  } finally {
    await pg.close();
  }
}
