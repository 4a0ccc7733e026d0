// An instance directory made by an earlier release belonged to the OS user
// all instances ran as, so its files were that user's to replace with links.
// Before the service (root) touches anything in it, the directory is taken
// back: processes left running in it stopped, the directory made the service's
// through a handle that follows no link, and every entry that is not a plain
// file or one of the child's directories removed (a link, a FIFO, a hard link
// to some other file). The service's files in it become the service's; the
// child's directories and their content are given to the instance's user
// later (see instance-layout.ts).
import { lstat, readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../../log.js";
import { socketDirInside, type InstancePaths } from "./instance-paths.js";
import { removeTree, SERVICE_ONLY, SERVICE_USER, setAccess } from "../host/owned-files.js";
import { stopStalePgbouncer, stopStalePostmaster } from "../children/stale-process.js";

/** Directories in an instance's directory that the child owns (or owned). */
const CHILD_ENTRIES = new Set(["pgdata", "run", "pgbouncer"]);
/** Where an earlier release kept PgBouncer's pid file. */
const EARLIER_PGBOUNCER_PID = "pgbouncer.pid";

/** True when `paths.dir` was not the service's and has been taken back. */
export async function takeBackEarlierInstance(paths: InstancePaths, logger: Logger): Promise<boolean> {
  const stats = await lstat(paths.dir);
  if (stats.isDirectory() && stats.uid === SERVICE_USER.uid) return false;
  logger.info({ dir: paths.dir }, "taking back an instance directory of an earlier release from its OS user");
  await stopStalePgbouncer(join(paths.dir, EARLIER_PGBOUNCER_PID), paths.pgbouncerIni, logger);
  await stopStalePgbouncer(paths.pgbouncerPid, paths.pgbouncerIni, logger);
  await stopStalePostmaster(paths.pgdata, logger);
  // Refused (not followed) if the directory itself is a link.
  await setAccess(paths.dir, { ...SERVICE_ONLY, mode: 0o700 }, "directory");
  for (const name of await readdir(paths.dir)) {
    const path = join(paths.dir, name);
    const entry = await lstat(path);
    if (entry.isDirectory() && (CHILD_ENTRIES.has(name) || name.startsWith("pgdata.tmp-"))) continue;
    if (entry.isFile() && entry.nlink === 1) await setAccess(path, SERVICE_ONLY, "file");
    else if (!entry.isDirectory()) await unlink(path);
  }
  // A socket directory in the temp dir (long paths) is remade for the new user.
  if (!socketDirInside(paths)) {
    const socketDir = await lstat(paths.socketDir).catch(() => undefined);
    if (socketDir?.isDirectory() && socketDir.uid === stats.uid) await removeTree(paths.socketDir);
  }
  return true;
}
