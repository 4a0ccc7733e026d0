// PostgreSQL and PgBouncer write their logs into the instance dir. Rotating at
// each (re)start keeps a crash-looping child from filling the disk, without a
// log-collector process per instance.
import { rename, stat } from "node:fs/promises";

const MAX_LOG_BYTES = 10 * 1024 * 1024;

/** Moves `path` to `path.1` (replacing an older one) once it has grown past 10 MB. */
export async function rotateLogIfLarge(path: string): Promise<void> {
  try {
    if ((await stat(path)).size > MAX_LOG_BYTES) await rename(path, `${path}.1`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}
