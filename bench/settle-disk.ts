// Writes the page cache back before a timed sample (untimed), so that no
// sample pays for the writes of the one before: a driver that flushes its
// copy with syncfs would otherwise write back everything dirty on the file system.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

export async function settleDisk(): Promise<void> {
  await run("sync");
}
