// After a crash or kill, backups the previous process left `running` never
// finish: they are marked failed ("interrupted") and whatever they wrote is
// removed, so no half-written dump is ever listed, served or restored. Runs
// once at start, before this service can begin a new backup. Replicas
// sharing the state and the backup directory: a backup another live replica
// is writing holds its database's dump lock, and is left alone.
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { loggableError, type Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { BackupRecord } from "../store/records.js";
import type { Store } from "../store/store.js";
import { backupFilePath, PARTIAL_SUFFIXES, partialFilePath } from "./backup-paths.js";

export const INTERRUPTED = "interrupted: the service stopped before the backup finished";

export interface RecoveryOptions {
  readonly store: Store;
  readonly backupDir: string;
  readonly now: Date;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /**
   * Runs `work` only if no live replica holds the project's dump lock (a
   * running backup does), answering false otherwise. Default: always runs
   * (one service: nothing else is writing).
   */
  readonly whenUnheld?: (projectId: string, work: () => Promise<void>) => Promise<boolean>;
}

export async function recoverInterruptedBackups(options: RecoveryOptions): Promise<BackupRecord[]> {
  const { store, backupDir, metrics, logger } = options;
  const whenUnheld = options.whenUnheld ?? (async (_projectId: string, work: () => Promise<void>) => (await work(), true));
  const recovered: BackupRecord[] = [];
  const live = new Set<string>();
  for (const record of await store.listBackupsByState("running")) {
    const orphan = await whenUnheld(record.projectId, async () => {
      // Read again under the lock: the replica that wrote it may have finished it since.
      if ((await store.getBackup(record.projectId, record.id))?.state !== "running") return;
      // The final name exists only if the kill came between rename and the
      // record update; without a recorded checksum that file cannot be trusted.
      await rm(partialFilePath(backupDir, record.slug, record.id, record.format), { force: true });
      await rm(backupFilePath(backupDir, record.slug, record.id, record.format), { force: true });
      const failed = await store.updateBackup(record.id, { state: "failed", error: INTERRUPTED, finishedAt: options.now });
      metrics.backupFailures.inc({ kind: record.kind });
      logger.error({ projectId: record.projectId, slug: record.slug, backupId: record.id, kind: record.kind }, "backup failed: interrupted by a restart");
      recovered.push(failed);
    });
    if (!orphan) live.add(record.id);
  }
  await removeStrayPartialFiles(backupDir, live, logger);
  return recovered;
}

/** Nothing of ours is being written at start, so a partial file no live replica writes (its record pruned or lost) is garbage. */
async function removeStrayPartialFiles(backupDir: string, live: ReadonlySet<string>, logger: Logger): Promise<void> {
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
    for (const name of names.filter((entry) => PARTIAL_SUFFIXES.some((suffix) => entry.endsWith(suffix)) && !live.has(backupIdOf(entry)))) {
      await rm(join(backupDir, project, name), { force: true }).catch((error: unknown) =>
        logger.warn({ file: join(project, name), err: loggableError(error) }, "could not remove a partial backup file"),
      );
    }
  }
}

/** The backup id a file in a project's backup directory is named after (ids hold no dot). */
function backupIdOf(name: string): string {
  return name.slice(0, name.indexOf("."));
}
