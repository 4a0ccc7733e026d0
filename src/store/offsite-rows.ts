// Rows of the off-host copy tables (schema version 5) and their records, for
// both state stores: times as epoch milliseconds, as everywhere in the state.
import type { OffsiteCopyRecord, OffsiteWalRecord } from "./records.js";
import { date } from "./rows.js";

export interface OffsiteCopyRow {
  backup_id: string;
  project_id: string;
  state: string;
  attempts: number;
  error: string | null;
  object_key: string | null;
  sha256: string | null;
  size_bytes: number | null;
  copied_at: number | null;
  next_attempt_at: number | null;
}

export interface OffsiteWalRow {
  project_id: string;
  generation: string;
  file: string;
  sha256: string;
  size_bytes: number;
  copied_at: number;
}

/** Column order of an insert, shared by both stores' statements. */
export const OFFSITE_COPY_COLUMNS = [
  "backup_id",
  "project_id",
  "state",
  "attempts",
  "error",
  "object_key",
  "sha256",
  "size_bytes",
  "copied_at",
  "next_attempt_at",
] as const satisfies readonly (keyof OffsiteCopyRow)[];

export const OFFSITE_WAL_COLUMNS = ["project_id", "generation", "file", "sha256", "size_bytes", "copied_at"] as const satisfies readonly (keyof OffsiteWalRow)[];

export function fromOffsiteCopy(record: OffsiteCopyRecord): OffsiteCopyRow {
  return {
    backup_id: record.backupId,
    project_id: record.projectId,
    state: record.state,
    attempts: record.attempts,
    error: record.error,
    object_key: record.objectKey,
    sha256: record.sha256,
    size_bytes: record.sizeBytes,
    copied_at: record.copiedAt?.getTime() ?? null,
    next_attempt_at: record.nextAttemptAt?.getTime() ?? null,
  };
}

export function toOffsiteCopy(row: OffsiteCopyRow): OffsiteCopyRecord {
  return {
    backupId: row.backup_id,
    projectId: row.project_id,
    state: row.state as OffsiteCopyRecord["state"],
    attempts: row.attempts,
    error: row.error,
    objectKey: row.object_key,
    sha256: row.sha256,
    sizeBytes: row.size_bytes,
    copiedAt: date(row.copied_at),
    nextAttemptAt: date(row.next_attempt_at),
  };
}

export function fromOffsiteWal(record: OffsiteWalRecord): OffsiteWalRow {
  return {
    project_id: record.projectId,
    generation: record.generation,
    file: record.file,
    sha256: record.sha256,
    size_bytes: record.sizeBytes,
    copied_at: record.copiedAt.getTime(),
  };
}

export function toOffsiteWal(row: OffsiteWalRow): OffsiteWalRecord {
  return {
    projectId: row.project_id,
    generation: row.generation,
    file: row.file,
    sha256: row.sha256,
    sizeBytes: row.size_bytes,
    copiedAt: new Date(row.copied_at),
  };
}
