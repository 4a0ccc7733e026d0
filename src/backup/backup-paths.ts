// Where a project's backups live on disk: {backupDir}/{slug}/{backup_id}.sql.gz
// for a dump, {backup_id}.base.tar.gz for a base backup, and the temporary
// name each is written under until it is complete. Slugs and backup ids are
// checked again here, not only at the edge, because these strings become
// file system paths.
import { join } from "node:path";
import { isBackupId, slugProblem } from "../names.js";
import type { BackupFormat } from "../store/records.js";

export const BACKUP_SUFFIX = ".sql.gz";
/** A backup still being written; never served, listed or restored. */
export const PARTIAL_SUFFIX = ".sql.gz.partial";

const SUFFIXES: Record<BackupFormat, string> = { dump: BACKUP_SUFFIX, base: ".base.tar.gz" };

/** Every format's temporary suffix: what start-up recovery sweeps. */
export const PARTIAL_SUFFIXES: readonly string[] = Object.values(SUFFIXES).map((suffix) => `${suffix}.partial`);

export function projectBackupDir(backupDir: string, slug: string): string {
  if (slugProblem(slug) !== undefined) throw new Error("refusing a backup path for an invalid slug");
  return join(backupDir, slug);
}

export function backupFilePath(backupDir: string, slug: string, backupId: string, format: BackupFormat = "dump"): string {
  return join(projectBackupDir(backupDir, slug), `${validId(backupId)}${SUFFIXES[format]}`);
}

export function partialFilePath(backupDir: string, slug: string, backupId: string, format: BackupFormat = "dump"): string {
  return join(projectBackupDir(backupDir, slug), `${validId(backupId)}${SUFFIXES[format]}.partial`);
}

function validId(backupId: string): string {
  if (!isBackupId(backupId)) throw new Error("refusing a backup path for an invalid backup id");
  return backupId;
}
