// The project manifest: one small object per project ({prefix}/{projectId}/manifest),
// encrypted like every other, that lets a host with nothing but the master key
// and the bucket find what the bucket holds for the project: its database's
// record (slug, runtime, the sealed password, so the same DATABASE_URL can
// come back), its backups with their checksums and keys, and its WAL
// generations (the segments themselves are listed from the bucket under
// wal/{generation}/, each with its checksum in its metadata). Rewritten when
// the project's backups, generations or database change, not for every WAL
// segment.
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { DomainError } from "../errors.js";
import type { BackupRecord, DatabaseRecord, OffsiteCopyRecord, OffsiteWalRecord } from "../store/records.js";
import type { ObjectLayout } from "./object-layout.js";
import { downloadDecrypted, uploadEncrypted, type TransferContext } from "./object-transfer.js";
import { walNeedOf } from "./wal-retention.js";

export const MANIFEST_VERSION = 1;

export interface ManifestBackup {
  readonly id: string;
  readonly kind: string;
  readonly format: string;
  readonly startedAt: string;
  readonly finishedAt: string | null;
  /** The backup file's size and sha256: the plaintext of its object. */
  readonly sizeBytes: number;
  readonly sha256: string;
  readonly key: string;
  readonly walGeneration: string | null;
  readonly walStartSegment: string | null;
}

export interface ProjectManifest {
  readonly version: number;
  readonly projectId: string;
  readonly writtenAt: string;
  /** The database's record as this host had it (no secret in clear: the password stays sealed with the master key). */
  readonly database: {
    readonly slug: string;
    readonly state: string;
    readonly runtime: string;
    readonly sealedPassword: string;
    readonly host: string | null;
    readonly port: number | null;
    readonly network: string | null;
    readonly limits: unknown;
    readonly createdAt: string;
  } | null;
  /** Backups whose copy is in the bucket, newest first. */
  readonly backups: readonly ManifestBackup[];
  /** WAL generations with files in the bucket, oldest first; their files are listed under wal/{generation}/. */
  readonly walGenerations: readonly string[];
}

export function buildManifest(
  projectId: string,
  database: DatabaseRecord | undefined,
  backups: readonly BackupRecord[],
  copies: readonly OffsiteCopyRecord[],
  wal: readonly OffsiteWalRecord[],
  now: Date,
): ProjectManifest {
  const copied = new Map(copies.filter((copy) => copy.state === "copied" && copy.objectKey).map((copy) => [copy.backupId, copy]));
  return {
    version: MANIFEST_VERSION,
    projectId,
    writtenAt: now.toISOString(),
    database: database
      ? {
          slug: database.slug,
          state: database.state,
          runtime: database.runtime,
          sealedPassword: database.sealedPassword,
          host: database.host,
          port: database.port,
          network: database.network,
          limits: database.limits ?? null,
          createdAt: database.createdAt.toISOString(),
        }
      : null,
    backups: backups
      .filter((backup) => copied.has(backup.id))
      .map((backup) => {
        const copy = copied.get(backup.id)!;
        const need = walNeedOf(backup);
        return {
          id: backup.id,
          kind: backup.kind,
          format: backup.format,
          startedAt: backup.startedAt.toISOString(),
          finishedAt: backup.finishedAt?.toISOString() ?? null,
          sizeBytes: copy.sizeBytes ?? backup.sizeBytes ?? 0,
          sha256: copy.sha256 ?? backup.sha256 ?? "",
          key: copy.objectKey!,
          walGeneration: need?.generation ?? null,
          walStartSegment: need?.startSegment ?? null,
        };
      }),
    walGenerations: [...new Set(wal.map((record) => record.generation))].sort(),
  };
}

export async function writeManifest(context: TransferContext, layout: ObjectLayout, manifest: ProjectManifest, signal?: AbortSignal): Promise<void> {
  const body = Buffer.from(JSON.stringify(manifest), "utf8");
  const fingerprint = { sha256: createHash("sha256").update(body).digest("hex"), sizeBytes: body.length };
  await uploadEncrypted(context, layout.manifest(manifest.projectId), Readable.from([body]), fingerprint, {}, signal);
}

/**
 * The project's manifest from the bucket, decrypted and checked: DomainError
 * not_found when there is none, data_loss when it does not decrypt under its
 * own name (damaged, or another project's moved here), is not one this
 * release wrote, or names anything out of shape. Its backups' keys are the
 * ones this layout gives them, whatever the manifest says.
 */
export async function readManifest(context: TransferContext, layout: ObjectLayout, projectId: string): Promise<ProjectManifest> {
  const plaintext = await text(await downloadDecrypted(context, layout.manifest(projectId)));
  let parsed: unknown;
  try {
    parsed = JSON.parse(plaintext);
  } catch {
    throw damaged(projectId, "it is not JSON");
  }
  return checkedManifest(parsed, layout, projectId);
}

const BACKUP_KINDS = new Set(["scheduled", "manual", "safety", "final"]);
const BACKUP_FORMATS = new Set(["dump", "base"]);
const DATABASE_STATES = new Set(["provisioning", "ready", "failed", "deleting", "deleted"]);
const SHA256 = /^[0-9a-f]{64}$/;
const SEGMENT = /^[0-9A-F]{24}$/;

function checkedManifest(raw: unknown, layout: ObjectLayout, projectId: string): ProjectManifest {
  const fail = (what: string): never => {
    throw damaged(projectId, what);
  };
  if (!isObject(raw) || raw["version"] !== MANIFEST_VERSION) fail("it is not a manifest this release reads");
  const manifest = raw as Record<string, unknown>;
  if (manifest["projectId"] !== projectId) fail("it names another project");
  if (!isTime(manifest["writtenAt"])) fail("its time is not a time");
  const database = manifest["database"];
  if (database !== null) {
    if (!isObject(database)) fail("its database is not a record");
    const record = database as Record<string, unknown>;
    if (typeof record["slug"] !== "string" || typeof record["runtime"] !== "string" || typeof record["sealedPassword"] !== "string") fail("its database lacks a slug, runtime or password");
    if (!DATABASE_STATES.has(record["state"] as string)) fail("its database has no known state");
    if (record["port"] !== null && !(Number.isInteger(record["port"]) && (record["port"] as number) >= 1 && (record["port"] as number) <= 65535)) fail("its database's port is not a port");
    if ((record["host"] !== null && typeof record["host"] !== "string") || (record["network"] !== null && typeof record["network"] !== "string")) fail("its database's endpoint is out of shape");
    if (!isTime(record["createdAt"])) fail("its database's creation time is not a time");
  }
  if (!Array.isArray(manifest["backups"]) || !Array.isArray(manifest["walGenerations"])) fail("it lists no backups or WAL generations");
  const backups = (manifest["backups"] as unknown[]).map((entry): ManifestBackup => {
    if (!isObject(entry)) return fail("a backup is not a record");
    const backup = entry as Record<string, unknown>;
    const id = backup["id"];
    const format = backup["format"];
    if (typeof id !== "string" || typeof format !== "string" || !BACKUP_FORMATS.has(format)) return fail("a backup has no id or format");
    let key: string;
    try {
      key = layout.backup(projectId, id, format).key;
    } catch {
      return fail("a backup id is out of shape");
    }
    const ok =
      BACKUP_KINDS.has(backup["kind"] as string) &&
      isTime(backup["startedAt"]) &&
      (backup["finishedAt"] === null || isTime(backup["finishedAt"])) &&
      Number.isSafeInteger(backup["sizeBytes"]) &&
      (backup["sizeBytes"] as number) >= 0 &&
      SHA256.test(String(backup["sha256"])) &&
      (format === "dump"
        ? backup["walGeneration"] === null && backup["walStartSegment"] === null
        : isGeneration(layout, projectId, backup["walGeneration"]) && SEGMENT.test(String(backup["walStartSegment"])));
    if (!ok) fail(`backup ${id} is out of shape`);
    return { ...(backup as unknown as ManifestBackup), key };
  });
  if (!(manifest["walGenerations"] as unknown[]).every((id) => isGeneration(layout, projectId, id))) fail("a WAL generation id is out of shape");
  return { ...(manifest as unknown as ProjectManifest), backups };
}

function damaged(projectId: string, what: string): DomainError {
  return new DomainError("data_loss", `the off-host manifest of project ${projectId} cannot be used: ${what}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isTime(value: unknown): boolean {
  return typeof value === "string" && !Number.isNaN(Date.parse(value));
}

function isGeneration(layout: ObjectLayout, projectId: string, id: unknown): boolean {
  if (typeof id !== "string") return false;
  try {
    layout.walPrefix(projectId, id);
    return true;
  } catch {
    return false;
  }
}
