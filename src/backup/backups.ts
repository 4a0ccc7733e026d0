// The Backups port the service depends on. The implementation (dump → gzip →
// file, retention, restore, verification, scheduling) lives beside this file.
import type { Readable } from "node:stream";
import type { DatabaseSpec, EnsureResult, RuntimeTarget } from "../runtime/runtime.js";
import type { ListedBackup } from "../offsite/offsite-view.js";
import type { BackupKind, BackupRecord, DatabaseRecord } from "../store/records.js";
import type { ClonePlan, PointInTimeOutcome } from "./point-in-time-restore.js";
import type { RecoveryWindowView } from "./recovery-window.js";

export type { ClonePlan, PointInTimeOutcome, RecoveryWindowView };

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
  /**
   * Point-in-time restore of the spec's database to `time`, from the base
   * backup named (undefined: the newest that reaches it). A safety backup
   * first, as restore(); `byTenant` as for create.
   */
  restoreToTime(spec: DatabaseSpec, backupId: string | undefined, time: Date, options?: { byTenant?: boolean }): Promise<PointInTimeOutcome>;
  /** The seconds the database can be restored to; undefined until its first base backup (or where it does not run here). */
  recoveryWindow(database: DatabaseRecord): Promise<RecoveryWindowView | undefined>;
  /** Checks a clone of `source` as of `time` (absent: now) can be made, and says from what; nothing is changed. */
  planClone(source: DatabaseRecord, time?: Date): Promise<ClonePlan>;
  /** Makes the spec's (new) database from the plan. */
  clone(spec: DatabaseSpec, plan: ClonePlan, signal?: AbortSignal): Promise<EnsureResult>;
  /** A base backup of a database that has just become ready, in the background: its recovery window starts there. */
  baseBackupSoon(target: RuntimeTarget): void;
  download(projectId: string, backupId: string): Promise<BackupDownload>;
  /** Stops the scheduler and waits for running backups to settle. */
  close(): Promise<void>;
}
