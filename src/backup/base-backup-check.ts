// VerifyBackup of a base backup. A dump is verified by loading it; a base
// backup is a whole server, which only the runtime could start, so this
// proves what can be proven without one: the file is the one written (sha256
// and size, on the bytes read), it decompresses to its end, it is a
// well-formed tar (every header's own checksum, the end-of-archive blocks),
// and it holds what a recovery starts from (PG_VERSION, global/pg_control,
// backup_label). The recovery itself is proven by restoring.
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { BackupRecord } from "../store/records.js";
import { BackupError, failureReason } from "./backup-errors.js";
import { readBaseBackupFile } from "./base-backup-file.js";
import type { VerifyOutcome } from "./verify.js";

const BLOCK = 512;
const REQUIRED = ["PG_VERSION", "global/pg_control", "backup_label"];

export async function verifyBaseBackupFile(path: string, record: BackupRecord): Promise<VerifyOutcome> {
  const tar = new TarWalker();
  try {
    await pipeline(readBaseBackupFile(path, record), tar);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { passed: false, error: "its file is missing from the backup directory" };
    if (code?.startsWith("Z_")) return { passed: false, error: "the file does not decompress: its gzip data is damaged" };
    return { passed: false, error: failureReason(error) };
  }
  if (!tar.ended) return { passed: false, error: "the archive is cut short: it has no end-of-archive blocks" };
  const missing = REQUIRED.filter((name) => !tar.names.has(name));
  if (missing.length > 0) return { passed: false, error: `the archive is not a PostgreSQL base backup: it lacks ${missing.join(", ")}` };
  return { passed: true, error: null };
}

/** Reads a ustar stream block by block: headers checked, file contents skipped. */
class TarWalker extends Writable {
  readonly names = new Set<string>();
  ended = false;
  private pending = Buffer.alloc(0);
  /** Bytes of the current entry's content (padded to blocks) still to skip. */
  private skip = 0;
  private zeroBlocks = 0;

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    let data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    try {
      while (data.length > 0) {
        if (this.skip > 0) {
          const n = Math.min(this.skip, data.length);
          this.skip -= n;
          data = data.subarray(n);
          continue;
        }
        if (data.length < BLOCK) break;
        this.header(data.subarray(0, BLOCK));
        data = data.subarray(BLOCK);
      }
    } catch (error) {
      callback(error as Error);
      return;
    }
    this.pending = Buffer.from(data);
    callback();
  }

  private header(block: Buffer): void {
    if (this.ended) return;
    if (block.every((byte) => byte === 0)) {
      if (++this.zeroBlocks === 2) this.ended = true;
      return;
    }
    this.zeroBlocks = 0;
    const stored = Number.parseInt(text(block, 148, 8).trim() || "x", 8);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
    if (stored !== sum) throw new BackupError("the archive is damaged: a tar header's checksum does not match", "data_loss");
    const prefix = block.subarray(257, 262).toString("latin1") === "ustar" ? text(block, 345, 155) : "";
    const name = (prefix ? `${prefix}/` : "") + text(block, 0, 100);
    this.names.add(name.replace(/^\.\//, ""));
    const size = entrySize(block);
    this.skip = Math.ceil(size / BLOCK) * BLOCK;
  }
}

function text(block: Buffer, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? length : end).toString("utf8");
}

/** Octal, or base-256 (high bit set) for entries of 8 GiB and more. */
function entrySize(block: Buffer): number {
  const field = block.subarray(124, 136);
  if ((field[0]! & 0x80) !== 0) {
    let size = 0;
    for (let i = 1; i < field.length; i++) size = size * 256 + field[i]!;
    return size;
  }
  const size = Number.parseInt(text(block, 124, 12).trim() || "0", 8);
  if (!Number.isSafeInteger(size) || size < 0) throw new BackupError("the archive is damaged: a tar header's size is not a number", "data_loss");
  return size;
}
