// Where a project's backups live on disk: {backupDir}/{slug}/{backup_id}.sql.gz,
// and the temporary name a backup is written under until it is complete.
// Slugs and backup ids are checked again here, not only at the edge, because
// these strings become file system paths.
import { join } from "node:path";
import { isBackupId, slugProblem } from "../names.js";

export const BACKUP_SUFFIX = ".sql.gz";
/** A backup still being written; never served, listed or restored. */
export const PARTIAL_SUFFIX = ".sql.gz.partial";

export function projectBackupDir(backupDir: string, slug: string): string {
  if (slugProblem(slug) !== undefined) throw new Error("refusing a backup path for an invalid slug");
  return join(backupDir, slug);
}

export function backupFilePath(backupDir: string, slug: string, backupId: string): string {
  return join(projectBackupDir(backupDir, slug), `${validId(backupId)}${BACKUP_SUFFIX}`);
}

export function partialFilePath(backupDir: string, slug: string, backupId: string): string {
  return join(projectBackupDir(backupDir, slug), `${validId(backupId)}${PARTIAL_SUFFIX}`);
}

function validId(backupId: string): string {
  if (!isBackupId(backupId)) throw new Error("refusing a backup path for an invalid backup id");
  return backupId;
}
