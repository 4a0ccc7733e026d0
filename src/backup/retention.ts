// Retention: backups older than the retention period are deleted, file and
// record together. Two backups are never deleted, whatever their age: the
// project's newest succeeded backup (an old good backup beats none when
// backups have been failing for a week) and any backup still running or in
// use by a restore, verification or download.
import { rm } from "node:fs/promises";
import { loggableError, type Logger } from "../log.js";
import type { BackupRecord } from "../store/records.js";
import type { Store } from "../store/store.js";
import { backupFilePath, partialFilePath } from "./backup-paths.js";

const DAY_MS = 24 * 60 * 60 * 1000;

export function expiryOf(startedAt: Date, retentionDays: number): Date {
  return new Date(startedAt.getTime() + retentionDays * DAY_MS);
}

/** Of one project's backups, those retention deletes at `now`. */
export function expiredBackups(
  records: readonly BackupRecord[],
  now: Date,
  retentionDays: number,
  inUse: ReadonlySet<string> = new Set(),
): BackupRecord[] {
  const newestGood = newestSucceeded(records);
  return records.filter(
    (record) =>
      record.state !== "running" &&
      record.id !== newestGood?.id &&
      !inUse.has(record.id) &&
      expiryOf(record.startedAt, retentionDays).getTime() <= now.getTime(),
  );
}

export function newestSucceeded(records: readonly BackupRecord[]): BackupRecord | undefined {
  let newest: BackupRecord | undefined;
  for (const record of records) {
    if (record.state !== "succeeded") continue;
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
  readonly logger: Logger;
}

/**
 * Deletes the file before the record: a crash in between leaves a record
 * whose file is gone, which the next run removes; the other order could
 * leave a file no record accounts for.
 */
export async function pruneBackups(options: PruneOptions): Promise<BackupRecord[]> {
  const { store, backupDir, projectId, logger } = options;
  const expired = expiredBackups(await store.listBackups(projectId), options.now, options.retentionDays, options.inUse);
  const deleted: BackupRecord[] = [];
  for (const record of expired) {
    try {
      await rm(backupFilePath(backupDir, record.slug, record.id), { force: true });
      await rm(partialFilePath(backupDir, record.slug, record.id), { force: true });
      await store.deleteBackup(record.id);
      deleted.push(record);
    } catch (error) {
      logger.error({ projectId, backupId: record.id, err: loggableError(error) }, "could not delete an expired backup; will retry");
    }
  }
  if (deleted.length > 0) {
    logger.info({ projectId, deleted: deleted.map((record) => record.id) }, "expired backups deleted");
  }
  return deleted;
}
