// The durable records the service keeps. Sealed fields hold AES-GCM envelopes
// (see secrets/sealer.ts), never plaintext.

/**
 * The pooler settings a runtime reported, as stored. Shaped like the runtime's
 * PoolerInfo but declared here: the store knows records, not runtimes.
 */
export interface PoolerRecord {
  readonly version: string;
  readonly poolMode: string;
  readonly defaultPoolSize: number;
  readonly maxClientConn: number;
  readonly preparedStatementsSupported: boolean;
  readonly maxPreparedStatements: number;
}

/**
 * "deleting": DeleteDatabase has started removing it from the host (finished by
 * the next delete, Ensure or start); "deleted": it is gone from the host, the
 * record stays so its backups and its slug stay the project's. A deleted
 * record is never updated again until Ensure makes a new database: its
 * updatedAt is when it was deleted.
 */
export type DatabaseState = "provisioning" | "ready" | "failed" | "deleting" | "deleted";

/**
 * A project's override of the service's default resource limits, as stored:
 * each field it sets replaces the default (0: no limit), the others follow
 * the defaults as they change.
 */
export interface LimitsRecord {
  readonly memoryMb?: number;
  readonly cpus?: number;
  readonly pids?: number;
  readonly shmMb?: number;
  /** Size quota in MiB: over it, the database is reported, never truncated. */
  readonly sizeQuotaMb?: number;
}

export interface DatabaseRecord {
  readonly projectId: string;
  readonly slug: string;
  readonly state: DatabaseState;
  readonly runtime: string;
  readonly sealedPassword: string;
  /** Sealed DATABASE_URL; null until the runtime has reported its endpoint. */
  readonly sealedUrl: string | null;
  readonly host: string | null;
  readonly port: number | null;
  readonly network: string | null;
  readonly postgresVersion: string | null;
  readonly pooler: PoolerRecord | null;
  /** Why the last attempt failed; never holds a secret. */
  readonly error: string | null;
  /** The project's limits override; absent: the defaults. */
  readonly limits?: LimitsRecord | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export type BackupKind = "scheduled" | "manual" | "safety" | "final";
/**
 * "dump": a gzip plain-SQL pg_dump of the project's database (downloadable,
 * restored by RestoreBackup without a target time). "base": a pg_basebackup
 * of its whole server, where a point-in-time restore starts; with it, the WAL
 * generation it belongs to and the first WAL segment a recovery from it needs.
 */
export type BackupFormat = "dump" | "base";
export type BackupState = "running" | "succeeded" | "failed";
export type VerificationState = "passed" | "failed";

export interface BackupRecord {
  readonly id: string;
  readonly projectId: string;
  readonly slug: string;
  readonly kind: BackupKind;
  readonly state: BackupState;
  readonly sizeBytes: number | null;
  readonly sha256: string | null;
  readonly startedAt: Date;
  readonly finishedAt: Date | null;
  readonly expiresAt: Date | null;
  readonly error: string | null;
  readonly verification: VerificationState | null;
  readonly verifiedAt: Date | null;
  readonly verificationError: string | null;
  readonly format: BackupFormat;
  /** A base backup's WAL generation (see runtime.ts WalGeneration); null for a dump, or until it has finished. */
  readonly walGeneration: string | null;
  /** A base backup's first WAL segment; null for a dump, or until it has finished. */
  readonly walStartSegment: string | null;
}

/** What a database has while no runtime serves it: before its first Ensure, and once deleted. */
export const NOTHING_RUNNING = {
  sealedUrl: null,
  host: null,
  port: null,
  network: null,
  postgresVersion: null,
  pooler: null,
  error: null,
} as const satisfies Partial<DatabaseRecord>;

/** A database as Ensure first records it: provisioning, nothing reported by a runtime yet. */
export function newDatabaseRecord(
  fields: Pick<DatabaseRecord, "projectId" | "slug" | "runtime" | "sealedPassword">,
  now: Date,
): DatabaseRecord {
  return { ...fields, state: "provisioning", ...NOTHING_RUNNING, createdAt: now, updatedAt: now };
}

/** A backup as it starts: running, nothing measured or verified yet. */
export function newBackupRecord(
  fields: Pick<BackupRecord, "id" | "projectId" | "slug" | "kind" | "startedAt"> & { readonly format?: BackupFormat },
): BackupRecord {
  return {
    format: "dump",
    walGeneration: null,
    walStartSegment: null,
    ...fields,
    state: "running",
    sizeBytes: null,
    sha256: null,
    finishedAt: null,
    expiresAt: null,
    error: null,
    verification: null,
    verifiedAt: null,
    verificationError: null,
  };
}

/**
 * Where a backup's off-host copy is (src/offsite/): "pending" until the first
 * attempt, "failed" while attempts fail (retried with backoff), "copied" once
 * the encrypted object is in the bucket. A backup with no record has not been
 * looked at yet: pending, as far as a caller can tell.
 */
export type OffsiteCopyState = "pending" | "copied" | "failed";

export interface OffsiteCopyRecord {
  readonly backupId: string;
  readonly projectId: string;
  readonly state: OffsiteCopyState;
  readonly attempts: number;
  /** Why the last attempt failed; never holds a secret. */
  readonly error: string | null;
  /** The bucket key, once copied. */
  readonly objectKey: string | null;
  /** sha256 and size of the plaintext copied (the backup file's bytes). */
  readonly sha256: string | null;
  readonly sizeBytes: number | null;
  readonly copiedAt: Date | null;
  /** When a failed copy is tried again. */
  readonly nextAttemptAt: Date | null;
}

/** One WAL file (segment, history file, or the partial segment as of `copiedAt`) in the bucket. */
export interface OffsiteWalRecord {
  readonly projectId: string;
  readonly generation: string;
  /** The file's name in the archive; the partial segment's ends in ".partial". */
  readonly file: string;
  readonly sha256: string;
  readonly sizeBytes: number;
  /** When its bytes were read from the archive. */
  readonly copiedAt: Date;
}

/** A backup's off-host copy before its first attempt. */
export function newOffsiteCopyRecord(backupId: string, projectId: string): OffsiteCopyRecord {
  return {
    backupId,
    projectId,
    state: "pending",
    attempts: 0,
    error: null,
    objectKey: null,
    sha256: null,
    sizeBytes: null,
    copiedAt: null,
    nextAttemptAt: null,
  };
}
