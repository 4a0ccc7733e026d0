// A copy fetched back from the bucket, written on this host as a whole or not
// at all: into a private temporary file beside the backups (same file
// system), fsynced, then renamed into place and the directory synced. A
// download that fails half way (a damaged object fails its stream at the
// latest at its end) leaves nothing under the final name.
import { createWriteStream } from "node:fs";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

/** `tempFile` must not exist; it is gone afterwards, whatever happened. */
export async function saveWhole(source: Readable, tempFile: string, path: string): Promise<void> {
  try {
    const handle = await open(tempFile, "wx", 0o600);
    // flush: fsync before close, so the rename below names complete bytes.
    await pipeline(source, createWriteStream("", { fd: handle, flush: true }));
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await rename(tempFile, path);
    await syncDirectory(dirname(path));
  } finally {
    source.destroy();
    await rm(tempFile, { force: true });
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync().catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EINVAL") throw error;
    });
  } finally {
    await handle.close();
  }
}
