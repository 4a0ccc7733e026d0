// The Store port: durable, transactional state. One SQLite implementation
// (sqlite-store.ts); the interface keeps service/ and backup/ free of SQL.
import { DomainError } from "../errors.js";
import type { PortRegistry } from "../runtime/port-registry.js";
import type { BackupRecord, DatabaseRecord } from "./records.js";

export type DatabasePatch = Partial<Omit<DatabaseRecord, "projectId" | "slug" | "createdAt" | "updatedAt">>;
export type BackupPatch = Partial<Omit<BackupRecord, "id" | "projectId" | "slug" | "kind" | "startedAt">>;

/** Inserting a database whose slug another project already owns. */
export class SlugTakenError extends DomainError {
  override readonly name = "SlugTakenError";
  constructor(message: string) {
    super("already_exists", message);
  }
}

export interface Store extends PortRegistry {
  getDatabase(projectId: string): DatabaseRecord | undefined;
  getDatabaseBySlug(slug: string): DatabaseRecord | undefined;
  listDatabases(): DatabaseRecord[];
  /** Throws SlugTakenError when the slug belongs to another project. */
  insertDatabase(record: DatabaseRecord): void;
  updateDatabase(projectId: string, patch: DatabasePatch): DatabaseRecord;
  deleteDatabase(projectId: string): void;
  countDatabasesByState(): Record<string, number>;

  insertBackup(record: BackupRecord): void;
  updateBackup(id: string, patch: BackupPatch): BackupRecord;
  getBackup(projectId: string, id: string): BackupRecord | undefined;
  /** Newest first. */
  listBackups(projectId: string): BackupRecord[];
  listBackupsByState(state: BackupRecord["state"]): BackupRecord[];
  deleteBackup(id: string): void;

  /** Throws when the store cannot be read. */
  ping(): void;
  close(): void;
}
