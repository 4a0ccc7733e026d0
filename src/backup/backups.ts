// The Backups port the service depends on. The implementation (dump → gzip →
// file, retention, restore, verification, scheduling) lives beside this file.
import type { Readable } from "node:stream";
import type { RuntimeTarget } from "../runtime/runtime.js";
import type { ListedBackup } from "../offsite/offsite-view.js";
import type { BackupKind, BackupRecord } from "../store/records.js";

export interface BackupDownload {
  readonly record: BackupRecord;
  readonly sizeBytes: number;
  readonly sha256: string;
  readonly stream: () => Readable;
}

export interface Backups {
  /**
   * Starts a backup and resolves with its record: at once (state running) or,
   * with `wait`, once it has finished. While one runs for the database, a new
   * request returns the running one. `byTenant`: asked for with a project
   * token, so it counts against the project's manual-backup limit.
   */
  create(target: RuntimeTarget, kind: BackupKind, options: { wait: boolean; byTenant?: boolean }): Promise<BackupRecord>;
  /** Newest first; succeeded ones say where their off-host copy is, when object storage is configured. */
  list(projectId: string): Promise<ListedBackup[]>;
  /** `byTenant`: as for create (a restore writes a safety backup). */
  restore(target: RuntimeTarget, backupId: string, options?: { byTenant?: boolean }): Promise<{ restored: BackupRecord; safety: BackupRecord }>;
  verify(target: RuntimeTarget, backupId: string): Promise<BackupRecord>;
  download(projectId: string, backupId: string): Promise<BackupDownload>;
  /** Stops the scheduler and waits for running backups to settle. */
  close(): Promise<void>;
}
