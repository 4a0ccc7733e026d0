// How the API's messages look to a human: a database as key/value lines,
// backups as a table. None of these messages carries a secret; the URL
// commands print theirs themselves.
import { toJsonString, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  BackupFormat,
  BackupKind,
  BackupState,
  DatabaseState,
  OffsiteState,
  VerificationState,
  type Backup,
  type Database,
  type DatabaseUsage,
  type RecoveryWindow,
} from "../../gen/sota/database/v1/database_pb.js";
import { bytes, fields, table } from "./table.js";

/** The response as protobuf JSON (the same shape as the REST API's), indented. */
export function json<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): string {
  return toJsonString(schema, message, { prettySpaces: 2 });
}

function enumName(names: Record<number, string>, value: number): string {
  return (names[value] ?? String(value)).toLowerCase();
}

export function time(timestamp: Timestamp | undefined): string {
  return timestamp ? timestampDate(timestamp).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "";
}

export function databaseFields(database: Database | undefined): [string, string][] {
  if (!database) return [];
  const pooler = database.pooler;
  return [
    ["project", database.projectId],
    ["slug", database.slug],
    ["state", enumName(DatabaseState, database.state)],
    ["error", database.error],
    ["runtime", database.runtime],
    ["postgres", database.postgresVersion],
    ["pooler", pooler ? `PgBouncer ${pooler.version}, ${pooler.poolMode} pooling, pool ${pooler.defaultPoolSize}, max ${pooler.maxClientConn} clients` : ""],
    ["host", database.host ? `${database.host}:${database.port}` : ""],
    ["database", database.databaseName],
    ["user", database.user],
    ["network", database.network],
    ["created", time(database.createTime)],
    [database.state === DatabaseState.DELETED ? "deleted" : "updated", time(database.updateTime)],
  ];
}

export function usageFields(usage: DatabaseUsage | undefined, unavailable: string): [string, string][] {
  if (!usage) return [["usage", unavailable ? `unavailable (${unavailable})` : ""]];
  return [
    ["size", bytes(usage.sizeBytes)],
    ["clients", `${usage.clientConnectionsActive} active, ${usage.clientConnectionsWaiting} waiting (max ${usage.maxClientConnections})`],
    ["servers", `${usage.serverConnectionsActive} active, ${usage.serverConnectionsIdle} idle (pool ${usage.poolSize})`],
    ["longest wait", `${usage.maxWaitSeconds.toFixed(1)} s`],
    ["read at", time(usage.readTime)],
  ];
}

export function databaseText(database: Database | undefined, extra: [string, string][] = []): string {
  return fields([...databaseFields(database), ...extra]);
}

/** The seconds a point-in-time restore can reach, or why there are none. */
export function recoveryWindowFields(window: RecoveryWindow | undefined): [string, string][] {
  if (!window) return [["recovery window", "none (no base backup yet, or point-in-time recovery is not available)"]];
  const latest = window.streaming ? `now (WAL streaming; ${time(window.latestTime)})` : `${time(window.latestTime)} (WAL not streaming)`;
  return [["recovery window", `${time(window.earliestTime)} to ${latest}`]];
}

const BACKUP_HEADERS = ["ID", "KIND", "FORMAT", "STATE", "SIZE", "VERIFIED", "STARTED", "EXPIRES", "OFFSITE"];

/** "dump" or "base"; a server older than formats sends none, and every backup it has is a dump. */
function formatName(format: BackupFormat): string {
  return format === BackupFormat.BASE ? "base" : "dump";
}

/** The off-host copy in a word: disabled, pending, copied, or failed with its attempts so far; "-" where none applies. */
function offsiteWord(backup: Backup): string {
  const offsite = backup.offsite;
  if (!offsite || offsite.state === OffsiteState.UNSPECIFIED) return "-";
  const word = enumName(OffsiteState, offsite.state);
  return offsite.state === OffsiteState.FAILED ? `${word} (${offsite.attempts})` : word;
}

function backupRow(backup: Backup): string[] {
  const verified = backup.verification === VerificationState.UNSPECIFIED ? "-" : enumName(VerificationState, backup.verification);
  return [
    backup.id,
    enumName(BackupKind, backup.kind),
    formatName(backup.format),
    enumName(BackupState, backup.state),
    backup.state === BackupState.SUCCEEDED ? bytes(backup.sizeBytes) : "-",
    verified,
    time(backup.startTime),
    time(backup.expireTime),
    offsiteWord(backup),
  ];
}

export function backupsTable(backups: readonly Backup[], window?: RecoveryWindow): string {
  const windowLine = fields(recoveryWindowFields(window));
  if (backups.length === 0) return ["no backups", windowLine].join("\n");
  const failures = backups.filter((backup) => backup.error || backup.verificationError || backup.offsite?.error);
  const notes = failures.map((backup) => `${backup.id}: ${backup.error || backup.verificationError || `off-host copy: ${backup.offsite!.error}`}`);
  return [table(BACKUP_HEADERS, backups.map(backupRow)), ...(notes.length ? ["", ...notes] : []), "", windowLine].join("\n");
}

export function backupText(backup: Backup | undefined): string {
  if (!backup) return "";
  return fields([
    ["backup", backup.id],
    ["project", backup.projectId],
    ["kind", enumName(BackupKind, backup.kind)],
    ["format", formatName(backup.format)],
    ["state", enumName(BackupState, backup.state)],
    ["error", backup.error],
    ["size", backup.state === BackupState.SUCCEEDED ? bytes(backup.sizeBytes) : ""],
    ["sha256", backup.sha256],
    ["started", time(backup.startTime)],
    ["finished", time(backup.finishTime)],
    ["expires", time(backup.expireTime)],
    ["verified", backup.verification === VerificationState.UNSPECIFIED ? "" : enumName(VerificationState, backup.verification)],
    ["verified at", time(backup.verifyTime)],
    ["verify error", backup.verificationError],
    ["off-host copy", offsiteWord(backup)],
    ["copied at", time(backup.offsite?.copyTime)],
    ["copy error", backup.offsite?.error ?? ""],
  ]);
}
