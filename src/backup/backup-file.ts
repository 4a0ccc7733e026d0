// Writes one backup file: plain SQL from pg_dump → gzip → {id}.sql.gz.partial,
// with size and sha256 of the compressed bytes computed on the way, then
// fsync, close, rename to {id}.sql.gz and fsync of the directory. Only a complete,
// durable file ever carries the final name; on any failure the partial file
// is removed, so a failed backup leaves nothing behind.
//
// Everything is streamed through pipeline(): backpressure from the disk
// reaches pg_dump, so memory stays flat whatever the database size.
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, rename, rm, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { Transform, type Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";

export interface WrittenBackup {
  readonly sizeBytes: number;
  readonly sha256: string;
}

/** Where the compressed bytes go. A seam for tests that simulate a failing disk. */
export type OpenOutput = (handle: FileHandle) => Writable;

export interface WriteBackupFileOptions {
  /** pg_dump's plain SQL. Destroyed on failure so the dump process ends too. */
  readonly source: Readable;
  readonly partialPath: string;
  readonly finalPath: string;
  readonly openOutput?: OpenOutput;
  readonly signal?: AbortSignal;
  /** zlib's level; default its own (6). A base backup uses 1: it is the whole server, and speed beats size there. */
  readonly gzipLevel?: number;
}

export async function writeBackupFile(options: WriteBackupFileOptions): Promise<WrittenBackup> {
  const { source, partialPath, finalPath } = options;
  const dir = dirname(finalPath);
  let handle: FileHandle | undefined;
  let created = false;
  // The dump may fail before the pipeline below is attached (pg_dump cannot
  // connect): keep that error for the caller instead of letting it go uncaught.
  let sourceError: unknown;
  const keepSourceError = (error: unknown): void => {
    sourceError ??= error;
  };
  source.on("error", keepSourceError);
  try {
    // 0700/0600: a dump holds every row of the customer's database.
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // "wx": a name that exists belongs to someone else and is never truncated.
    handle = await open(partialPath, "wx", 0o600);
    created = true;
    if (source.destroyed) throw sourceError ?? new Error("the dump stream closed before it could be read");
    const meter = new ChecksumMeter();
    // flush: fsync before the stream closes the file, so the rename below only ever names complete bytes.
    const output = options.openOutput?.(handle) ?? createWriteStream("", { fd: handle, flush: true });
    await pipeline(source, createGzip(options.gzipLevel === undefined ? {} : { level: options.gzipLevel }), meter, output, ...(options.signal ? [{ signal: options.signal }] : []));
    handle = undefined;
    await rename(partialPath, finalPath);
    await syncDirectory(dir);
    return { sizeBytes: meter.size, sha256: meter.digest() };
  } catch (error) {
    source.destroy();
    await handle?.close().catch(() => undefined);
    if (created) await rm(partialPath, { force: true }).catch(() => undefined);
    throw error;
  }
}

/** sha256 and size of a file, streamed. */
export async function fileChecksum(path: string): Promise<WrittenBackup> {
  const meter = new ChecksumMeter();
  // Nothing reads the meter's output: let it flow away.
  meter.resume();
  await pipeline(createReadStream(path), meter);
  return { sizeBytes: meter.size, sha256: meter.digest() };
}

/** Passes bytes through unchanged while hashing and counting them. */
export class ChecksumMeter extends Transform {
  private readonly hash = createHash("sha256");
  size = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null, data?: Buffer) => void): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    callback(null, chunk);
  }

  digest(): string {
    return this.hash.digest("hex");
  }
}

/** Makes the rename itself durable: without it a power cut may forget the new name. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } catch (error) {
    // Some file systems cannot fsync a directory; the rename is as durable as they allow.
    if ((error as NodeJS.ErrnoException).code !== "EINVAL") throw error;
  } finally {
    await handle.close();
  }
}
