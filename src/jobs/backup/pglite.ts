// Backups of the embedded PGlite database: its own data-directory tarball, with the same
// manifest (row counts and checksums) as the Postgres backups.

import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { PGlite } from "@electric-sql/pglite";
import { backupId, type Manifest, type TableState, writeManifest } from "./store";
import { DELETION_LOG, describeTables, type Query, qualified, tableStates } from "./tables";

const queryOf =
  (pg: Pick<PGlite, "query">): Query =>
  async (text, params) =>
    (await pg.query(text, params)).rows as never;

/**
 * Counts, checksums and the dump happen inside one PGlite transaction: PGlite serialises every
 * query behind it, so no write can land between the manifest and the tarball.
 */
export async function takePgliteBackup(pglite: PGlite, dir: string, now: Date): Promise<Manifest> {
  const id = backupId(now, "full");
  const file = `${id}.tar.gz`;
  const { tables, dump } = await pglite.transaction(async (tx) => {
    const query = queryOf(tx);
    const tables = await tableStates(query, await describeTables(query));
    return { tables, dump: await pglite.dumpDataDir("gzip") };
  });
  const partial = join(dir, `${file}.partial`);
  await writeFile(partial, new Uint8Array(await dump.arrayBuffer()), { mode: 0o600 });
  await rename(partial, join(dir, file));
  // Every embedded backup is a whole snapshot: the deletion log (kept by the same migrations as
  // on Postgres) is never read here, so it is emptied rather than left to grow.
  await pglite.query(`delete from ${qualified(DELETION_LOG)}`);
  return writeManifest(dir, { format: 1, id, kind: "full", engine: "pglite", createdAt: now.toISOString(), chain: id, file, tables });
}

/** Loads a tarball into a fresh in-memory PGlite and measures every table. */
export async function restorePgliteBackup(dir: string, manifest: Manifest): Promise<Record<string, TableState>> {
  const { PGlite } = await import("@electric-sql/pglite");
  const { pg_trgm } = await import("@electric-sql/pglite/contrib/pg_trgm");
  const bytes = await readFile(join(dir, manifest.file));
  const pg = await PGlite.create({ loadDataDir: new Blob([bytes]), extensions: { pg_trgm } });
  try {
    const query = queryOf(pg);
    return await tableStates(query, await describeTables(query));
  } finally {
    await pg.close();
  }
}
