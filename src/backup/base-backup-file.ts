// A base backup's file: the runtime's pg_basebackup tar stream → gzip (level
// 1: it is the whole server, and the time it takes is time the recovery
// window waits for) → {id}.base.tar.gz, written like a dump (partial name,
// sha256 and size on the way, fsync, rename). And the way back: the file,
// its checksum checked on the very bytes read, gunzipped, for a recovery.
import { createReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import { pipeline, type Readable, type TransformCallback } from "node:stream";
import { createGunzip } from "node:zlib";
import type { BaseBackupInfo, PointInTimeRecovery, RuntimeTarget } from "../runtime/runtime.js";
import type { BackupRecord } from "../store/records.js";
import { ChecksumMismatchError } from "./backup-loader.js";
import { ChecksumMeter, writeBackupFile, type OpenOutput, type WrittenBackup } from "./backup-file.js";

export const BASE_BACKUP_GZIP_LEVEL = 1;

export interface WrittenBaseBackup extends WrittenBackup {
  readonly info: BaseBackupInfo;
}

export async function writeBaseBackupFile(
  pitr: PointInTimeRecovery,
  target: RuntimeTarget,
  paths: { readonly partialPath: string; readonly finalPath: string },
  openOutput?: OpenOutput,
): Promise<WrittenBaseBackup> {
  const { stream, info } = pitr.baseBackup(target);
  // Settled below; a stream that fails first must not leave it unhandled.
  info.catch(() => undefined);
  const written = await writeBackupFile({ source: stream, ...paths, gzipLevel: BASE_BACKUP_GZIP_LEVEL, ...(openOutput ? { openOutput } : {}) });
  try {
    return { ...written, info: await info };
  } catch (error) {
    // The bytes ended but pg_basebackup did not succeed: the file is not a backup.
    await rm(paths.finalPath, { force: true });
    throw error;
  }
}

/**
 * The base backup's tar, streamed from its file. The file's sha256 and size
 * are checked as it is read, and a mismatch fails the stream before it ends:
 * a recovery reading it fails (and puts the server back) rather than start
 * from bytes that are not the ones written.
 */
export function readBaseBackupFile(path: string, record: BackupRecord): Readable {
  const check = new VerifyingMeter(record.sha256 ?? "", record.sizeBytes ?? -1);
  return pipeline(createReadStream(path), check, createGunzip(), () => undefined);
}

/** The meter of backup-file.ts that fails, at the end, bytes that are not the recorded ones. */
class VerifyingMeter extends ChecksumMeter {
  constructor(
    private readonly sha256: string,
    private readonly sizeBytes: number,
  ) {
    super();
  }

  override _flush(callback: TransformCallback): void {
    callback(this.size === this.sizeBytes && this.digest() === this.sha256 ? null : new ChecksumMismatchError());
  }
}
