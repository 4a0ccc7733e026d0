// After a crash or kill, backups the previous process left `running` never
// finish: they are marked failed ("interrupted") and whatever they wrote is
// removed, so no half-written dump is ever listed, served or restored. Runs
// once at start, before anything can begin a new backup.
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { loggableError, type Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { BackupRecord } from "../store/records.js";
import type { Store } from "../store/store.js";
import { backupFilePath, PARTIAL_SUFFIX, partialFilePath } from "./backup-paths.js";

export const INTERRUPTED = "interrupted: the service stopped before the backup finished";

export interface RecoveryOptions {
  readonly store: Store;
  readonly backupDir: string;
  readonly now: Date;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

export async function recoverInterruptedBackups(options: RecoveryOptions): Promise<BackupRecord[]> {
  const { store, backupDir, metrics, logger } = options;
  const recovered: BackupRecord[] = [];
  for (const record of await store.listBackupsByState("running")) {
    // The final name exists only if the kill came between rename and the
    // record update; without a recorded checksum that file cannot be trusted.
    await rm(partialFilePath(backupDir, record.slug, record.id), { force: true });
    await rm(backupFilePath(backupDir, record.slug, record.id), { force: true });
    const failed = await store.updateBackup(record.id, { state: "failed", error: INTERRUPTED, finishedAt: options.now });
    metrics.backupFailures.inc({ kind: record.kind });
    logger.error({ projectId: record.projectId, slug: record.slug, backupId: record.id, kind: record.kind }, "backup failed: interrupted by a restart");
    recovered.push(failed);
  }
  await removeStrayPartialFiles(backupDir, logger);
  return recovered;
}

/** Nothing is being written at start, so any partial file left (its record pruned or lost) is garbage. */
async function removeStrayPartialFiles(backupDir: string, logger: Logger): Promise<void> {
  let projects: string[];
  try {
    projects = await readdir(backupDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  for (const project of projects) {
    let names: string[];
    try {
      names = await readdir(join(backupDir, project));
    } catch {
      continue;
    }
    for (const name of names.filter((entry) => entry.endsWith(PARTIAL_SUFFIX))) {
      await rm(join(backupDir, project, name), { force: true }).catch((error: unknown) =>
        logger.warn({ file: join(project, name), err: loggableError(error) }, "could not remove a partial backup file"),
      );
    }
  }
}
