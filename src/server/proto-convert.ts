// Domain records → API messages. Sealed fields are never copied: a Database
// or Backup message cannot carry a secret.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BackupFormat,
  BackupKind,
  BackupSchema,
  BackupState,
  DatabaseLimitsSchema,
  DatabaseSchema,
  DatabaseUsageSchema,
  DatabaseState,
  OffsiteCopySchema,
  OffsiteState,
  PoolerSchema,
  RecoveryWindowSchema,
  SizeQuotaSchema,
  VerificationState,
  type Backup,
  type Database,
  type OffsiteCopy,
  type DatabaseLimits,
  type DatabaseUsage,
  type RecoveryWindow,
} from "../../gen/sota/database/v1/database_pb.js";
import { roleName } from "../service/database-url.js";
import type { DatabaseFigures } from "../service/database-figures.js";
import type { ListedBackup, OffsiteCopyView } from "../offsite/offsite-view.js";
import type { BackupRecord, DatabaseRecord, LimitsRecord } from "../store/records.js";
import type { LimitsStatus } from "../runtime/runtime.js";
import type { LimitsChange } from "../service/limits-override.js";
import type { SizeQuotaReport } from "../service/size-quota.js";
import type { RecoveryWindowView } from "../service/database-service.js";

const DATABASE_STATES: Record<DatabaseRecord["state"], DatabaseState> = {
  provisioning: DatabaseState.PROVISIONING,
  ready: DatabaseState.READY,
  failed: DatabaseState.FAILED,
  deleting: DatabaseState.DELETING,
  deleted: DatabaseState.DELETED,
};

const BACKUP_KINDS: Record<BackupRecord["kind"], BackupKind> = {
  scheduled: BackupKind.SCHEDULED,
  manual: BackupKind.MANUAL,
  safety: BackupKind.SAFETY,
  final: BackupKind.FINAL,
};

const BACKUP_FORMATS: Record<BackupRecord["format"], BackupFormat> = {
  dump: BackupFormat.DUMP,
  base: BackupFormat.BASE,
};

const BACKUP_STATES: Record<BackupRecord["state"], BackupState> = {
  running: BackupState.RUNNING,
  succeeded: BackupState.SUCCEEDED,
  failed: BackupState.FAILED,
};

/**
 * `status`: the limits as the runtime enforces them (GetDatabase); without
 * it, the project's stored override is shown as the limits.
 */
export function databaseMessage(record: DatabaseRecord, status?: LimitsStatus, quota?: SizeQuotaReport): Database {
  return create(DatabaseSchema, {
    ...(quota
      ? {
          sizeQuota: create(SizeQuotaSchema, {
            quotaBytes: BigInt(quota.quotaBytes),
            sizeBytes: BigInt(quota.sizeBytes),
            exceeded: quota.exceeded,
          }),
        }
      : {}),
    ...(status
      ? {
          limits: limitsMessage({ ...status.limits, ...(quota ? { sizeQuotaMb: quota.quotaBytes / MIB } : {}) }),
          limitsEnforcement: status.mechanism,
          oomKills: BigInt(status.oomKills),
        }
      : record.limits
        ? { limits: limitsMessage(record.limits) }
        : {}),
    projectId: record.projectId,
    slug: record.slug,
    state: DATABASE_STATES[record.state],
    runtime: record.runtime,
    postgresVersion: record.postgresVersion ?? "",
    ...(record.pooler ? { pooler: create(PoolerSchema, record.pooler) } : {}),
    host: record.host ?? "",
    port: record.port ?? 0,
    databaseName: record.slug,
    user: roleName(record.slug),
    network: record.network ?? "",
    createTime: timestampFromDate(record.createdAt),
    updateTime: timestampFromDate(record.updatedAt),
    error: record.error ?? "",
  });
}

export function usageMessage(figures: DatabaseFigures): DatabaseUsage {
  return create(DatabaseUsageSchema, {
    sizeBytes: BigInt(figures.sizeBytes),
    clientConnectionsActive: figures.clients.active,
    clientConnectionsWaiting: figures.clients.waiting,
    serverConnectionsActive: figures.servers.active,
    serverConnectionsIdle: figures.servers.idle,
    maxWaitSeconds: figures.maxWaitSeconds,
    maxClientConnections: figures.maxClientConnections,
    poolSize: figures.poolSize,
    readTime: timestampFromDate(figures.readAt),
  });
}

const MIB = 1024 * 1024;

function limitsMessage(limits: LimitsRecord): DatabaseLimits {
  const { sizeQuotaMb, ...rest } = limits;
  return create(DatabaseLimitsSchema, { ...rest, ...(sizeQuotaMb !== undefined ? { sizeQuotaMb: BigInt(sizeQuotaMb) } : {}) });
}

/** A request's DatabaseLimits as a change of the override (unset fields stay undefined). */
export function limitsChange(message: DatabaseLimits | undefined): LimitsChange | undefined {
  if (!message) return undefined;
  const sizeQuotaMb = message.sizeQuotaMb === undefined ? undefined : Number(message.sizeQuotaMb);
  return { memoryMb: message.memoryMb, cpus: message.cpus, pids: message.pids, shmMb: message.shmMb, sizeQuotaMb };
}

const OFFSITE_STATES: Record<OffsiteCopyView["state"], OffsiteState> = {
  disabled: OffsiteState.DISABLED,
  pending: OffsiteState.PENDING,
  copied: OffsiteState.COPIED,
  failed: OffsiteState.FAILED,
};

function offsiteMessage(view: OffsiteCopyView): OffsiteCopy {
  return create(OffsiteCopySchema, {
    state: OFFSITE_STATES[view.state],
    ...(view.copiedAt ? { copyTime: timestampFromDate(view.copiedAt) } : {}),
    error: view.error ?? "",
    attempts: view.attempts,
  });
}

/** `offsite` is set where the caller looked it up (ListBackups, for succeeded backups). */
export function backupMessage(record: ListedBackup): Backup {
  return create(BackupSchema, {
    ...(record.offsite ? { offsite: offsiteMessage(record.offsite) } : {}),
    id: record.id,
    projectId: record.projectId,
    kind: BACKUP_KINDS[record.kind],
    state: BACKUP_STATES[record.state],
    sizeBytes: BigInt(record.sizeBytes ?? 0),
    sha256: record.sha256 ?? "",
    startTime: timestampFromDate(record.startedAt),
    ...(record.finishedAt ? { finishTime: timestampFromDate(record.finishedAt) } : {}),
    ...(record.expiresAt ? { expireTime: timestampFromDate(record.expiresAt) } : {}),
    error: record.error ?? "",
    verification:
      record.verification === "passed"
        ? VerificationState.PASSED
        : record.verification === "failed"
          ? VerificationState.FAILED
          : VerificationState.UNSPECIFIED,
    ...(record.verifiedAt ? { verifyTime: timestampFromDate(record.verifiedAt) } : {}),
    verificationError: record.verificationError ?? "",
    format: BACKUP_FORMATS[record.format],
  });
}

export function recoveryWindowMessage(window: RecoveryWindowView | undefined): { recoveryWindow?: RecoveryWindow } {
  if (!window) return {};
  return {
    recoveryWindow: create(RecoveryWindowSchema, {
      earliestTime: timestampFromDate(window.earliest),
      latestTime: timestampFromDate(window.latest),
      streaming: window.streaming,
    }),
  };
}

/** Timestamp's own range (RFC 3339 years 0001 to 9999), in seconds. */
const MIN_SECONDS = -62_135_596_800n;
const MAX_SECONDS = 253_402_300_799n;

/**
 * A request's timestamp as a Date, or undefined when unset. A value outside
 * Timestamp's range (a hostile client can send any seconds and nanos over
 * gRPC) is refused here, before anything below sees it.
 */
export function timeOf(timestamp: Timestamp | undefined, field: string): Date | undefined {
  if (!timestamp) return undefined;
  const { seconds, nanos } = timestamp;
  if (seconds < MIN_SECONDS || seconds > MAX_SECONDS || !Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) {
    throw new ConnectError(`${field} is not a valid timestamp: seconds must be within years 0001 to 9999 and nanos within 0 to 999999999`, Code.InvalidArgument);
  }
  return new Date(Number(seconds) * 1000 + Math.floor(nanos / 1_000_000));
}
