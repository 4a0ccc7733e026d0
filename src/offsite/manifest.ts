// The project manifest: one small object per project ({prefix}/{projectId}/manifest),
// encrypted like every other, that lets a host with nothing but the master key
// and the bucket find what the bucket holds for the project: its database's
// record (slug, runtime, the sealed password, so the same DATABASE_URL can
// come back), its backups with their checksums and keys, and its WAL
// generations (the segments themselves are listed from the bucket under
// wal/{generation}/, each with its checksum in its metadata). Rewritten when
// the project's backups or generations change, not for every WAL segment.
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
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

/** The project's manifest from the bucket, decrypted and checked (DomainError not_found when there is none, data_loss when damaged). */
export async function readManifest(context: TransferContext, layout: ObjectLayout, projectId: string): Promise<ProjectManifest> {
  const manifest = JSON.parse(await text(await downloadDecrypted(context, layout.manifest(projectId)))) as ProjectManifest;
  if (manifest.version !== MANIFEST_VERSION || manifest.projectId !== projectId) throw new Error(`the manifest of project ${projectId} is not one this release reads`);
  return manifest;
}
