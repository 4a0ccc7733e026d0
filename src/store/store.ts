// The Store port: durable, transactional state, asynchronous so that an
// implementation may live across the network. SQLite (sqlite-store.ts) is the
// embedded default, PostgreSQL (postgres-store.ts) the shared one; the
// interface keeps service/ and backup/ free of SQL, and one contract suite
// (test/support/store-contract.ts) holds both to the same behaviour.
import { DomainError } from "../errors.js";
import type { BackupRecord, DatabaseRecord, DatabaseState, OffsiteCopyRecord, OffsiteWalRecord } from "./records.js";

/** createdAt is set again only when Ensure makes a new database in place of a deleted one. */
export type DatabasePatch = Partial<Omit<DatabaseRecord, "projectId" | "slug" | "updatedAt">>;
export type BackupPatch = Partial<Omit<BackupRecord, "id" | "projectId" | "slug" | "kind" | "startedAt">>;

/** Inserting a database whose slug another project already owns. */
export class SlugTakenError extends DomainError {
  override readonly name = "SlugTakenError";
  constructor(message: string) {
    super("already_exists", message);
  }
}

export function slugTaken(slug: string): SlugTakenError {
  return new SlugTakenError(`slug "${slug}" belongs to another project`);
}

export interface Store {
  getDatabase(projectId: string): Promise<DatabaseRecord | undefined>;
  getDatabaseBySlug(slug: string): Promise<DatabaseRecord | undefined>;
  listDatabases(): Promise<DatabaseRecord[]>;
  /** Rejects with SlugTakenError when the slug belongs to another project; nothing is written then. */
  insertDatabase(record: DatabaseRecord): Promise<void>;
  updateDatabase(projectId: string, patch: DatabasePatch): Promise<DatabaseRecord>;
  /** With onlyIfState, deletes only a record in that state, in one statement; resolves whether a record was deleted. */
  deleteDatabase(projectId: string, options?: { onlyIfState?: DatabaseState }): Promise<boolean>;
  countDatabasesByState(): Promise<Record<string, number>>;

  insertBackup(record: BackupRecord): Promise<void>;
  updateBackup(id: string, patch: BackupPatch): Promise<BackupRecord>;
  getBackup(projectId: string, id: string): Promise<BackupRecord | undefined>;
  /** Newest first. */
  listBackups(projectId: string): Promise<BackupRecord[]>;
  listBackupsByState(state: BackupRecord["state"]): Promise<BackupRecord[]>;
  deleteBackup(id: string): Promise<void>;

  /**
   * Records the schedule's cron slots as run by `replica`; answers the ones
   * this call recorded (a slot another replica already claimed is left out),
   * so each slot is run once however many replicas lead in turn.
   */
  claimScheduledRuns(slots: readonly Date[], replica: string): Promise<Date[]>;
  /** The newest slot any replica claimed, if any. */
  lastScheduledRun(): Promise<Date | undefined>;
  /** Forgets slots older than `before`, but never the newest (it says where the next leader picks up). */
  forgetScheduledRunsBefore(before: Date): Promise<void>;

  /** Creates or replaces the off-host copy record of its backup. */
  putOffsiteCopy(record: OffsiteCopyRecord): Promise<void>;
  /** Of one project, or of all when no project is named. */
  listOffsiteCopies(projectId?: string): Promise<OffsiteCopyRecord[]>;
  deleteOffsiteCopy(backupId: string): Promise<void>;
  /** Creates or replaces the record of one WAL file in the bucket. */
  putOffsiteWal(record: OffsiteWalRecord): Promise<void>;
  /** Of one project, or of all when no project is named; ordered by project, generation, then file. */
  listOffsiteWal(projectId?: string): Promise<OffsiteWalRecord[]>;
  deleteOffsiteWal(projectId: string, generation: string, file: string): Promise<void>;

  /** Rejects when the store cannot be read. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
