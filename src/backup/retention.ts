// Retention: backups older than the retention period are deleted, file and
// record together. Some backups are never deleted, whatever their age: the
// project's newest succeeded backup of each format, dump and base (an old
// good backup beats none when backups have been failing for a week, and a
// point-in-time restore needs a base backup to start from), and any backup
// still running or in use by a restore, verification, download or clone. A deleted database's backups
// follow one rule instead: all of them, the newest too (there is no database
// left for it to protect), are kept for the deleted retention period after
// the delete, then go; the database's record goes with the last of them.
import { rm } from "node:fs/promises";
import { loggableError, type Logger } from "../log.js";
import type { BackupFormat, BackupRecord } from "../store/records.js";
import type { Store } from "../store/store.js";
import { backupFilePath, partialFilePath } from "./backup-paths.js";

const DAY_MS = 24 * 60 * 60 * 1000;

export function expiryOf(startedAt: Date, retentionDays: number): Date {
  return new Date(startedAt.getTime() + retentionDays * DAY_MS);
}

/** A deleted database: when it was deleted, and for how many days its backups are kept after that. */
export interface DeletedRetention {
  readonly deletedAt: Date;
  readonly days: number;
}

/** When a backup expires: its own retention, or the deleted database's. */
export function backupExpiry(record: BackupRecord, retentionDays: number, deleted?: DeletedRetention): Date {
  return deleted ? expiryOf(deleted.deletedAt, deleted.days) : expiryOf(record.startedAt, retentionDays);
}

/** Of one project's backups, those retention deletes at `now`. */
export function expiredBackups(
  records: readonly BackupRecord[],
  now: Date,
  retentionDays: number,
  inUse: ReadonlySet<string> = new Set(),
  deleted?: DeletedRetention,
): BackupRecord[] {
  if (deleted) {
    return records.filter(
      (record) => record.state !== "running" && !inUse.has(record.id) && backupExpiry(record, retentionDays, deleted).getTime() <= now.getTime(),
    );
  }
  const newestGood = new Set(FORMATS.map((format) => newestSucceeded(records, format)?.id));
  return records.filter(
    (record) =>
      record.state !== "running" &&
      !newestGood.has(record.id) &&
      !inUse.has(record.id) &&
      expiryOf(record.startedAt, retentionDays).getTime() <= now.getTime(),
  );
}

const FORMATS: readonly BackupFormat[] = ["dump", "base"];

/** The newest succeeded backup, of one format when given. */
export function newestSucceeded(records: readonly BackupRecord[], format?: BackupFormat): BackupRecord | undefined {
  let newest: BackupRecord | undefined;
  for (const record of records) {
    if (record.state !== "succeeded" || (format !== undefined && record.format !== format)) continue;
    if (!newest || record.startedAt > newest.startedAt || (record.startedAt.getTime() === newest.startedAt.getTime() && record.id > newest.id)) {
      newest = record;
    }
  }
  return newest;
}

export interface PruneOptions {
  readonly store: Store;
  readonly backupDir: string;
  readonly projectId: string;
  readonly now: Date;
  readonly retentionDays: number;
  readonly inUse?: ReadonlySet<string>;
  /** Set when the project's database is deleted. */
  readonly deleted?: DeletedRetention;
  readonly logger: Logger;
}

/**
 * Deletes the file before the record: a crash in between leaves a record
 * whose file is gone, which the next run removes; the other order could
 * leave a file no record accounts for.
 */
export async function pruneBackups(options: PruneOptions): Promise<BackupRecord[]> {
  const { store, backupDir, projectId, logger } = options;
  const records = await store.listBackups(projectId);
  const expired = expiredBackups(records, options.now, options.retentionDays, options.inUse, options.deleted);
  const deleted: BackupRecord[] = [];
  for (const record of expired) {
    try {
      await rm(backupFilePath(backupDir, record.slug, record.id, record.format), { force: true });
      await rm(partialFilePath(backupDir, record.slug, record.id, record.format), { force: true });
      await store.deleteBackup(record.id);
      deleted.push(record);
    } catch (error) {
      logger.error({ projectId, backupId: record.id, err: loggableError(error) }, "could not delete an expired backup; will retry");
    }
  }
  if (deleted.length > 0) {
    logger.info({ projectId, deleted: deleted.map((record) => record.id) }, "expired backups deleted");
  }
  // A deleted database's period over and its last backup gone: so is its record, and its slug is
  // free again. Only while still deleted: an Ensure may have made a new database meanwhile.
  const { deleted: gone } = options;
  if (
    gone &&
    expiryOf(gone.deletedAt, gone.days).getTime() <= options.now.getTime() &&
    deleted.length === records.length &&
    (await store.deleteDatabase(projectId, { onlyIfState: "deleted" }))
  ) {
    logger.info({ projectId }, "deleted database forgotten: its retention has passed");
  }
  return deleted;
}
