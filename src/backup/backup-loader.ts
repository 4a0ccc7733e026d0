// Feeds a backup file into a database of the project's server: file →
// sha256/size meter → gunzip → the Runtime's restore (psql with
// ON_ERROR_STOP). The checksum is computed on the very bytes that were loaded,
// so a file that changed after an earlier check is still caught before its
// content is trusted.
import { createReadStream } from "node:fs";
import { pipeline } from "node:stream";
import { createGunzip } from "node:zlib";
import type { Runtime, RuntimeTarget } from "../runtime/runtime.js";
import { BackupError } from "./backup-errors.js";
import { ChecksumMeter } from "./backup-file.js";

export interface ExpectedChecksum {
  readonly sha256: string;
  readonly sizeBytes: number;
}

/** The file's bytes are not those recorded when the backup was written. */
export class ChecksumMismatchError extends BackupError {
  override readonly name = "ChecksumMismatchError";
  constructor() {
    super("checksum mismatch: the backup file is not the one that was written", "data_loss");
  }
}

export async function loadBackupFile(
  runtime: Runtime,
  target: RuntimeTarget,
  path: string,
  database: string,
  expected: ExpectedChecksum,
): Promise<void> {
  const meter = new ChecksumMeter();
  let settle!: (error?: Error | null) => void;
  const streamed = new Promise<void>((resolve, reject) => {
    settle = (error) => (error ? reject(error) : resolve());
  });
  // A read or gunzip error destroys the chain, which ends psql's input with that error.
  streamed.catch(() => undefined);
  const sql = pipeline(createReadStream(path), meter, createGunzip(), (error) => settle(error));
  try {
    await runtime.restore(target, sql, database);
  } catch (error) {
    // A load that failed early would otherwise leave the file open.
    sql.destroy();
    throw error;
  }
  await streamed;
  if (meter.size !== expected.sizeBytes || meter.digest() !== expected.sha256) throw new ChecksumMismatchError();
}
