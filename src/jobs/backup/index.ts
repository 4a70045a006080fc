// The backup jobs (Bun host only): full, incremental, restore-verify, each followed by the
// retention sweep. Postgres when DATABASE_URL is set, the embedded PGlite otherwise.

import { join } from "node:path";
import type { JobDeps } from "../../deps";
import { describeError } from "../../lib/logger";
import type { JobReport } from "../types";
import { restorePgliteBackup, takePgliteBackup } from "./pglite";
import { dropScratch, pruneDeletionLog, restoreChain, takeFullBackup, takeIncrementalBackup } from "./postgres";
import { applyRetention, compareTables, ensureBackupDir, listManifests, type Manifest, newestChain, sha256File } from "./store";

function postgresUrl(deps: JobDeps): string {
  const url = deps.env.DATABASE_URL;
  if (!url) throw new Error("DATABASE_URL is needed to back up a Postgres database");
  return url;
}

/**
 * Maintenance connections: the direct (unpooled) URL when there is one; otherwise the pooled
 * one, on which every step is a single transaction that sets nothing beyond it.
 */
const maintenanceUrl = (deps: JobDeps) => deps.env.DATABASE_DIRECT_URL ?? postgresUrl(deps);

/**
 * After a Postgres backup: the deletion log's entries its snapshot saw are no longer needed
 * (the next incremental builds on it). A failure leaves them for the next backup to prune.
 */
async function pruneLog(deps: JobDeps, report: JobReport, manifest: Manifest): Promise<JobReport> {
  if (manifest.engine !== "postgres" || !manifest.deletionLog || !manifest.snapshotXmin) return report;
  try {
    return { ...report, deletionsPruned: await pruneDeletionLog(maintenanceUrl(deps), manifest.snapshotXmin) };
  } catch (error) {
    deps.logger.error("pruning the backup deletion log failed", describeError(error));
    return { ...report, ok: false, pruneError: String(describeError(error).error) };
  }
}

async function withRetention(deps: JobDeps, report: JobReport, manifest?: Manifest): Promise<JobReport> {
  if (manifest) report = await pruneLog(deps, report, manifest);
  try {
    const deleted = await applyRetention(deps.env.BACKUP_DIR, deps.clock());
    return { ...report, retentionDeleted: deleted };
  } catch (error) {
    deps.logger.error("backup retention failed", describeError(error));
    return { ...report, ok: false, retentionError: String(describeError(error).error) };
  }
}

const summary = (m: Manifest) => ({
  id: m.id,
  kind: m.kind,
  file: m.file,
  bytes: m.bytes,
  rows: Object.fromEntries(Object.entries(m.tables).map(([t, s]) => [t, s.rows])),
});

export async function runBackupFull(deps: JobDeps): Promise<JobReport> {
  const dir = deps.env.BACKUP_DIR;
  await ensureBackupDir(dir);
  const now = deps.clock();
  const manifest =
    deps.handle.kind === "pglite"
      ? await takePgliteBackup(deps.handle.pglite!, dir, now)
      : await takeFullBackup(postgresUrl(deps), dir, now, deps.env.DATABASE_DIRECT_URL);
  deps.logger.info("backup written", summary(manifest));
  return withRetention(deps, { job: "backup-full", ok: true, backup: summary(manifest) }, manifest);
}

export async function runBackupIncremental(deps: JobDeps): Promise<JobReport> {
  const dir = deps.env.BACKUP_DIR;
  await ensureBackupDir(dir);
  const now = deps.clock();
  if (deps.handle.kind === "pglite") {
    // The embedded database is small and has no change feed to read: a snapshot is its increment.
    const manifest = await takePgliteBackup(deps.handle.pglite!, dir, now);
    return withRetention(deps, {
      job: "backup-incremental",
      ok: true,
      backup: summary(manifest),
      note: "embedded database: a full snapshot was taken",
    });
  }
  const url = maintenanceUrl(deps);
  const chain = newestChain(await listManifests(dir, "postgres"));
  const base = chain.at(-1);
  let fallback: string | undefined = base ? undefined : "there is no full backup yet";
  if (base) {
    const result = await takeIncrementalBackup(url, dir, now, base);
    if ("chainBroken" in result) fallback = result.chainBroken;
    else {
      deps.logger.info("backup written", summary(result));
      return withRetention(deps, { job: "backup-incremental", ok: true, backup: summary(result), changes: result.changes }, result);
    }
  }
  deps.logger.warn("incremental backup replaced by a full backup", { reason: fallback });
  const manifest = await takeFullBackup(postgresUrl(deps), dir, now, deps.env.DATABASE_DIRECT_URL);
  return withRetention(deps, { job: "backup-incremental", ok: true, backup: summary(manifest), fellBackToFull: fallback }, manifest);
}

/**
 * Restores the newest chain and compares it with the manifests of its backups. On Postgres it
 * first extends the chain by a checkpoint: an incremental that also checksums every table, so
 * the restored end is compared row by row with the live database as it was a moment ago (an
 * ordinary incremental records counts only). Anything short of an exact match (a file whose
 * hash changed, a restore error, a different count or checksum) is a failed report and an error
 * log line, so the CLI exits non-zero.
 */
export async function runRestoreVerify(deps: JobDeps, opts: { keepScratch?: boolean } = {}): Promise<JobReport> {
  const dir = deps.env.BACKUP_DIR;
  const engine = deps.handle.kind;
  let chain = newestChain(await listManifests(dir, engine));
  const fail = (problems: string[], extra: Record<string, unknown> = {}): JobReport => {
    deps.logger.error("restore verification failed", { chain: chain.map((m) => m.id), problems });
    return { job: "restore-verify", ok: false, chain: chain.map((m) => m.id), problems, ...extra };
  };
  if (chain.length === 0) return fail([`no ${engine} full backup in ${dir}`]);

  const corrupted: string[] = [];
  for (const m of chain) {
    const actual = await sha256File(join(dir, m.file)).catch(() => "missing");
    if (actual !== m.sha256)
      corrupted.push(`${m.file}: ${actual === "missing" ? "missing" : "contents changed since the backup (sha256 differs)"}`);
  }
  if (corrupted.length) return fail(corrupted);

  let checkpoint: Record<string, unknown> = {};
  if (engine === "postgres") {
    const parent = chain.at(-1)!;
    // A new id even when the clock has not moved since the last backup (tests, a fast rerun).
    const at = new Date(Math.max(deps.clock().getTime(), Date.parse(parent.createdAt) + 1));
    try {
      const result = await takeIncrementalBackup(maintenanceUrl(deps), dir, at, parent, { checksums: true });
      if ("chainBroken" in result) checkpoint = { checkpointSkipped: result.chainBroken };
      else {
        const pruned = await pruneLog(deps, { job: "restore-verify", ok: true }, result);
        checkpoint = { checkpoint: result.id, ...(pruned.ok ? {} : { pruneError: pruned.pruneError }) };
        chain = [...chain, result];
      }
    } catch (error) {
      return fail([`the checkpoint backup failed: ${String(describeError(error).error)}`]);
    }
  }

  const last = chain.at(-1)!;
  let tables: Awaited<ReturnType<typeof restorePgliteBackup>>;
  let scratchDatabase: string | undefined;
  let problems: string[];
  try {
    if (engine === "pglite") {
      tables = await restorePgliteBackup(dir, last);
      problems = compareTables(last.tables, tables);
    } else ({ tables, scratchDatabase, problems } = await restoreChain(maintenanceUrl(deps), dir, chain, deps.clock(), opts.keepScratch));
  } catch (error) {
    return fail([`the restore failed: ${String(describeError(error).error)}`], checkpoint);
  }
  if (problems.length) {
    if (scratchDatabase && opts.keepScratch) await dropScratch(maintenanceUrl(deps), scratchDatabase);
    return fail(problems, checkpoint);
  }
  deps.logger.info("restore verified", { chain: chain.map((m) => m.id) });
  return {
    job: "restore-verify",
    ok: true,
    chain: chain.map((m) => m.id),
    ...checkpoint,
    tables: Object.fromEntries(Object.entries(tables).map(([t, s]) => [t, s.rows])),
    ...(opts.keepScratch ? { scratchDatabase } : {}),
  };
}
