// A minimal ustar archive of small regular files: the format the engine's
// putArchive takes, to write PgBouncer's files into its container (no host
// bind mounts, so the service also works from inside a container).

export interface ArchiveFile {
  /** Relative path inside the archive, at most 100 bytes. */
  readonly name: string;
  readonly content: string;
  readonly mode: number;
  /** Numeric owner: the engine extracts as root and keeps it. */
  readonly uid: number;
  readonly gid: number;
}

const BLOCK = 512;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function header(file: ArchiveFile, size: number, mtime: number): Buffer {
  const { name, mode, uid, gid } = file;
  const block = Buffer.alloc(BLOCK, 0);
  if (Buffer.byteLength(name) > 100) throw new Error(`archive entry name too long: ${name}`);
  block.write(name, 0, 100, "utf8");
  block.write(octal(mode, 8), 100, 8, "ascii");
  block.write(octal(uid, 8), 108, 8, "ascii");
  block.write(octal(gid, 8), 116, 8, "ascii");
  block.write(octal(size, 12), 124, 12, "ascii");
  block.write(octal(mtime, 12), 136, 12, "ascii");
  block.write("        ", 148, 8, "ascii");
  block.write("0", 156, 1, "ascii");
  block.write("ustar\0", 257, 6, "ascii");
  block.write("00", 263, 2, "ascii");
  let checksum = 0;
  for (const byte of block) checksum += byte;
  block.write(checksum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "ascii");
  return block;
}

export function tarArchive(files: readonly ArchiveFile[], now = new Date()): Buffer {
  const mtime = Math.floor(now.getTime() / 1000);
  const parts: Buffer[] = [];
  for (const file of files) {
    const body = Buffer.from(file.content, "utf8");
    parts.push(header(file, body.length, mtime), body);
    const padding = (BLOCK - (body.length % BLOCK)) % BLOCK;
    if (padding > 0) parts.push(Buffer.alloc(padding, 0));
  }
  parts.push(Buffer.alloc(BLOCK * 2, 0));
  return Buffer.concat(parts);
}
