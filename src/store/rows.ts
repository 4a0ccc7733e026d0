// The row shape both state stores keep (times as epoch milliseconds, pooler
// settings as JSON text) and its mapping to and from records, so SQLite and
// PostgreSQL cannot drift apart in what a record round-trips to.
import type { BackupRecord, DatabaseRecord } from "./records.js";
import type { BackupPatch, DatabasePatch } from "./store.js";

export interface DatabaseRow {
  project_id: string;
  slug: string;
  state: string;
  runtime: string;
  sealed_password: string;
  sealed_url: string | null;
  host: string | null;
  port: number | null;
  network: string | null;
  postgres_version: string | null;
  pooler_json: string | null;
  error: string | null;
  limits_json: string | null;
  created_at: number;
  updated_at: number;
}

export interface BackupRow {
  id: string;
  project_id: string;
  slug: string;
  kind: string;
  state: string;
  size_bytes: number | null;
  sha256: string | null;
  started_at: number;
  finished_at: number | null;
  expires_at: number | null;
  error: string | null;
  verification: string | null;
  verified_at: number | null;
  verification_error: string | null;
  format: string;
  wal_generation: string | null;
  wal_start_segment: string | null;
}

const DATABASE_COLUMNS: Record<keyof DatabasePatch, keyof DatabaseRow> = {
  state: "state",
  runtime: "runtime",
  sealedPassword: "sealed_password",
  sealedUrl: "sealed_url",
  host: "host",
  port: "port",
  network: "network",
  postgresVersion: "postgres_version",
  pooler: "pooler_json",
  error: "error",
  createdAt: "created_at",
  limits: "limits_json",
};

/** Fields stored as JSON text. */
const JSON_FIELDS: ReadonlySet<keyof DatabasePatch> = new Set(["pooler", "limits"]);

const BACKUP_COLUMNS: Record<keyof BackupPatch, keyof BackupRow> = {
  state: "state",
  sizeBytes: "size_bytes",
  sha256: "sha256",
  finishedAt: "finished_at",
  expiresAt: "expires_at",
  error: "error",
  verification: "verification",
  verifiedAt: "verified_at",
  verificationError: "verification_error",
  format: "format",
  walGeneration: "wal_generation",
  walStartSegment: "wal_start_segment",
};

/** The columns a database patch sets, with their stored values. */
export function databasePatchColumns(patch: DatabasePatch): [keyof DatabaseRow, unknown][] {
  const columns: [keyof DatabaseRow, unknown][] = [];
  for (const [field, column] of Object.entries(DATABASE_COLUMNS) as [keyof DatabasePatch, keyof DatabaseRow][]) {
    if (!(field in patch)) continue;
    const value = patch[field];
    columns.push([column, JSON_FIELDS.has(field) ? (value == null ? null : JSON.stringify(value)) : value instanceof Date ? value.getTime() : value]);
  }
  return columns;
}

/** The columns a backup patch sets, with their stored values. */
export function backupPatchColumns(patch: BackupPatch): [keyof BackupRow, unknown][] {
  const columns: [keyof BackupRow, unknown][] = [];
  for (const [field, column] of Object.entries(BACKUP_COLUMNS) as [keyof BackupPatch, keyof BackupRow][]) {
    if (!(field in patch)) continue;
    const value = patch[field];
    columns.push([column, value instanceof Date ? value.getTime() : value]);
  }
  return columns;
}

/** A nullable epoch-milliseconds column as a Date. */
export function date(ms: number | null): Date | null {
  return ms == null ? null : new Date(ms);
}

export function toDatabase(row: DatabaseRow): DatabaseRecord {
  return {
    projectId: row.project_id,
    slug: row.slug,
    state: row.state as DatabaseRecord["state"],
    runtime: row.runtime,
    sealedPassword: row.sealed_password,
    sealedUrl: row.sealed_url,
    host: row.host,
    port: row.port,
    network: row.network,
    postgresVersion: row.postgres_version,
    pooler: row.pooler_json ? JSON.parse(row.pooler_json) : null,
    error: row.error,
    ...(row.limits_json ? { limits: JSON.parse(row.limits_json) } : {}),
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

export function fromDatabase(record: DatabaseRecord): DatabaseRow {
  return {
    project_id: record.projectId,
    slug: record.slug,
    state: record.state,
    runtime: record.runtime,
    sealed_password: record.sealedPassword,
    sealed_url: record.sealedUrl,
    host: record.host,
    port: record.port,
    network: record.network,
    postgres_version: record.postgresVersion,
    pooler_json: record.pooler ? JSON.stringify(record.pooler) : null,
    error: record.error,
    limits_json: record.limits ? JSON.stringify(record.limits) : null,
    created_at: record.createdAt.getTime(),
    updated_at: record.updatedAt.getTime(),
  };
}

export function toBackup(row: BackupRow): BackupRecord {
  return {
    id: row.id,
    projectId: row.project_id,
    slug: row.slug,
    kind: row.kind as BackupRecord["kind"],
    state: row.state as BackupRecord["state"],
    sizeBytes: row.size_bytes,
    sha256: row.sha256,
    startedAt: new Date(row.started_at),
    finishedAt: date(row.finished_at),
    expiresAt: date(row.expires_at),
    error: row.error,
    verification: row.verification as BackupRecord["verification"],
    verifiedAt: date(row.verified_at),
    verificationError: row.verification_error,
    format: row.format as BackupRecord["format"],
    walGeneration: row.wal_generation,
    walStartSegment: row.wal_start_segment,
  };
}

export function fromBackup(record: BackupRecord): BackupRow {
  return {
    id: record.id,
    project_id: record.projectId,
    slug: record.slug,
    kind: record.kind,
    state: record.state,
    size_bytes: record.sizeBytes,
    sha256: record.sha256,
    started_at: record.startedAt.getTime(),
    finished_at: record.finishedAt?.getTime() ?? null,
    expires_at: record.expiresAt?.getTime() ?? null,
    error: record.error,
    verification: record.verification,
    verified_at: record.verifiedAt?.getTime() ?? null,
    verification_error: record.verificationError,
    format: record.format,
    wal_generation: record.walGeneration,
    wal_start_segment: record.walStartSegment,
  };
}
