// PostgreSQL and PgBouncer write their logs into the instance dir. Rotating at
// each (re)start keeps a crash-looping child from filling the disk, without a
// log-collector process per instance.
import { lstat, rename } from "node:fs/promises";

const MAX_LOG_BYTES = 10 * 1024 * 1024;

/**
 * Moves `path` to `path.1` (replacing an older one) once it has grown past 10
 * MB. PgBouncer's log lies in a directory of the child: lstat and rename act
 * on the names there, never on what a planted link points to.
 */
export async function rotateLogIfLarge(path: string): Promise<void> {
  try {
    if ((await lstat(path)).size > MAX_LOG_BYTES) await rename(path, `${path}.1`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}
