// Disaster recovery from object storage: a database this host has no record
// of, brought back from what the bucket holds for its project (see
// src/offsite/: the manifest, encrypted backups and WAL).
//
// - With a base backup in the bucket (and a runtime with point-in-time
//   recovery): the newest one is fetched back whole and checked, and the
//   runtime recovers it as a new database replaying the WAL of its
//   generation that the bucket holds, streamed straight from the bucket
//   (RecoveryTarget.wal): the latest point the bucket holds.
// - Otherwise the runtime makes the database, and the newest dump is fetched
//   back and loaded into it.
// - With neither, the database comes back empty: the bucket knew it, but
//   holds nothing of its data.
// Then the manifest's backups become this host's records (copied off-host:
// ListBackups shows them, a restore or download fetches them back), and so do
// the WAL objects, so retention here carries on where the lost host's stopped.
// The service records the database and calls this; it takes a fresh base
// backup afterwards, as after any first ensure.
import { rm, rmdir } from "node:fs/promises";
import { DomainError, kindOf } from "../errors.js";
import { loggableError, type Logger } from "../log.js";
import type { ManifestBackup, OffsiteRecovery, ProjectManifest } from "../offsite/index.js";
import type { DatabaseSpec, EnsureResult, Runtime } from "../runtime/runtime.js";
import type { BackupRecord } from "../store/records.js";
import type { Store } from "../store/store.js";
import { failureReason } from "./backup-errors.js";
import { loadBackupFile } from "./backup-loader.js";
import { backupFilePath, projectBackupDir } from "./backup-paths.js";
import { readBaseBackupFile } from "./base-backup-file.js";
import { expiryOf } from "./retention.js";

/** What the service asks of disaster recovery (absent where no bucket is configured, or the lookup is switched off). */
export interface DisasterRecovery {
  /** What the bucket holds for the project; undefined: nothing. Rejects unavailable (the bucket did not answer) or data_loss (a manifest that cannot be trusted). */
  find(projectId: string): Promise<ProjectManifest | undefined>;
  /** Makes the spec's database from the manifest's newest backup (and WAL); resolves with what the runtime reports and the backup it came from. */
  bringBack(spec: DatabaseSpec, manifest: ProjectManifest, signal?: AbortSignal): Promise<BroughtBack>;
  /** The manifest's backups and the bucket's WAL objects, recorded as this host's (copied off-host). */
  adopt(manifest: ProjectManifest, slug: string): Promise<void>;
  /** Undoes bringBack's files and adopt's records, for a recovery that failed. */
  forget(manifest: ProjectManifest, slug: string): Promise<void>;
}

export interface BroughtBack {
  readonly result: EnsureResult;
  /** The backup the data came from; absent when the bucket held none. */
  readonly from?: ManifestBackup;
}

export interface BucketRecoveryOptions {
  readonly offsite: Pick<OffsiteRecovery, "manifest" | "fetchBackup" | "walSource" | "walObjects">;
  readonly runtime: Runtime;
  readonly store: Store;
  /** SOTA_BACKUP_DIR: fetched files land where this host keeps its backups. */
  readonly dir: string;
  readonly retentionDays: number;
  readonly logger: Logger;
}

export class BucketRecovery implements DisasterRecovery {
  constructor(private readonly options: BucketRecoveryOptions) {}

  find(projectId: string): Promise<ProjectManifest | undefined> {
    return this.options.offsite.manifest(projectId);
  }

  async bringBack(spec: DatabaseSpec, manifest: ProjectManifest, signal?: AbortSignal): Promise<BroughtBack> {
    const { runtime, offsite, logger } = this.options;
    const target = { projectId: spec.projectId, slug: spec.slug };
    const log = { projectId: spec.projectId, slug: spec.slug };
    const base = runtime.pitr ? newest(manifest.backups.filter((backup) => backup.format === "base" && backup.finishedAt !== null)) : undefined;
    try {
      if (base && runtime.pitr) {
        const record = backupRecord(base, spec.projectId, spec.slug, this.options.retentionDays);
        const path = backupFilePath(this.options.dir, spec.slug, base.id, "base");
        await offsite.fetchBackup(spec.projectId, base, path);
        const generation = base.walGeneration!;
        const { result } = await runtime.pitr.recover(
          spec,
          readBaseBackupFile(path, record),
          { source: target, generation, wal: offsite.walSource(spec.projectId, generation) },
          signal,
        );
        logger.info({ ...log, backupId: base.id, generation }, "database brought back from object storage: base backup and the WAL the bucket holds");
        return { result, from: base };
      }
      const dump = newest(manifest.backups.filter((backup) => backup.format === "dump"));
      const result = await runtime.ensure({ ...spec, mustExist: false }, signal);
      if (!dump) {
        logger.warn(log, "object storage knows this database but holds no backup of it: it comes back empty, behind the same DATABASE_URL");
        return { result };
      }
      const path = backupFilePath(this.options.dir, spec.slug, dump.id);
      await offsite.fetchBackup(spec.projectId, dump, path);
      await loadBackupFile(runtime, target, path, spec.slug, { sha256: dump.sha256, sizeBytes: dump.sizeBytes });
      logger.info({ ...log, backupId: dump.id }, "database brought back from object storage: its newest dump");
      return { result, from: dump };
    } catch (error) {
      logger.error({ ...log, err: loggableError(error) }, "bringing a database back from object storage failed");
      throw new DomainError(kindOf(error), `bringing database "${spec.slug}" back from object storage failed (${failureReason(error)})`);
    }
  }

  async adopt(manifest: ProjectManifest, slug: string): Promise<void> {
    const { store, offsite } = this.options;
    const { projectId } = manifest;
    const wal = await offsite.walObjects(projectId);
    const copiedAt = new Date(manifest.writtenAt);
    // Idempotent: a recovery cut short may have recorded some already.
    const known = new Set((await store.listBackups(projectId)).map((backup) => backup.id));
    for (const backup of manifest.backups) {
      if (!known.has(backup.id)) await store.insertBackup(backupRecord(backup, projectId, slug, this.options.retentionDays));
      await store.putOffsiteCopy({
        backupId: backup.id,
        projectId,
        state: "copied",
        attempts: 1,
        error: null,
        objectKey: backup.key,
        sha256: backup.sha256,
        sizeBytes: backup.sizeBytes,
        copiedAt,
        nextAttemptAt: null,
      });
    }
    for (const record of wal) await store.putOffsiteWal(record);
    this.options.logger.info({ projectId, backups: manifest.backups.length, walFiles: wal.length }, "backups and WAL in object storage recorded as this host's");
  }

  async forget(manifest: ProjectManifest, slug: string): Promise<void> {
    const { store } = this.options;
    const { projectId } = manifest;
    // The off-host records first: a copier pass must never find WAL records of a project with no database (it would delete them from the bucket).
    for (const record of await store.listOffsiteWal(projectId)) await store.deleteOffsiteWal(projectId, record.generation, record.file);
    for (const copy of await store.listOffsiteCopies(projectId)) await store.deleteOffsiteCopy(copy.backupId);
    for (const backup of await store.listBackups(projectId)) await store.deleteBackup(backup.id);
    // The file bringBack fetched, whichever it was (records or not); the directory only if that leaves it empty.
    for (const backup of manifest.backups) await rm(backupFilePath(this.options.dir, slug, backup.id, backup.format as BackupRecord["format"]), { force: true });
    await rmdir(projectBackupDir(this.options.dir, slug)).catch(() => undefined);
  }
}

/** The newest by start time. */
function newest(backups: readonly ManifestBackup[]): ManifestBackup | undefined {
  return [...backups].sort((a, b) => Date.parse(b.startedAt) - Date.parse(a.startedAt))[0];
}

/** A backup of the manifest as this host records its own: succeeded, its file to be fetched back when needed. */
function backupRecord(backup: ManifestBackup, projectId: string, slug: string, retentionDays: number): BackupRecord {
  const startedAt = new Date(backup.startedAt);
  return {
    id: backup.id,
    projectId,
    slug,
    kind: backup.kind as BackupRecord["kind"],
    state: "succeeded",
    sizeBytes: backup.sizeBytes,
    sha256: backup.sha256,
    startedAt,
    finishedAt: backup.finishedAt === null ? null : new Date(backup.finishedAt),
    expiresAt: expiryOf(startedAt, retentionDays),
    error: null,
    verification: null,
    verifiedAt: null,
    verificationError: null,
    format: backup.format as BackupRecord["format"],
    walGeneration: backup.walGeneration,
    walStartSegment: backup.walStartSegment,
  };
}
