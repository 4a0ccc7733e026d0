// Who owns what in an instance's directory (see instanceLayout): the
// directory and the files the service writes are the service's; the data
// directory, the socket's and PgBouncer's directories are the instance's OS
// user's, 0700. Settled every time an instance is prepared, so a layout made by
// an earlier release, or a user given anew, ends up the same.
import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { socketDirInside, type InstancePaths } from "./instance-paths.js";
import type { InstanceUsers } from "../host/instance-users.js";
import type { RunAs } from "../host/os-user.js";
import { ensureDir, ownedBy, passableBy, readChildFile, SERVICE_USER, setAccess } from "../host/owned-files.js";
import { pathExists } from "../host/path-checks.js";
import { runCommand } from "../children/run-command.js";

/** The instance's directory passable by `runAs`, and the child's own directories in it. */
export async function settleLayout(paths: InstancePaths, runAs: RunAs): Promise<void> {
  await setAccess(paths.dir, passableBy(runAs), "directory");
  await ensureDir(paths.pgbouncerDir, ownedBy(runAs));
  if (socketDirInside(paths)) await ensureDir(paths.socketDir, ownedBy(runAs));
}

/**
 * Gives the data directory, and everything in it, to `runAs` when it belongs
 * to someone else: a database of an earlier release (every instance was the
 * one user `postgres`'s), or one whose user was made anew. Run before any
 * process of `runAs` exists; chown -R -h changes links themselves and never
 * follows one.
 */
export async function giveDataDir(paths: InstancePaths, runAs: RunAs): Promise<boolean> {
  const stats = await lstat(paths.pgdata).catch(() => undefined);
  if (!stats?.isDirectory() || (stats.uid === runAs.uid && stats.gid === runAs.gid)) return false;
  await runCommand("chown", ["-R", "-h", `${runAs.uid}:${runAs.gid}`, paths.pgdata], { timeoutMs: 600_000 });
  return true;
}

/**
 * For the copies a killed run left (spares, warm instances): whether one is a
 * complete copy of PostgreSQL `major`, made by this release (the service's
 * directory, its user recorded and still there) and given to no project.
 */
export async function isReusableCopy(paths: InstancePaths, users: InstanceUsers, major: number): Promise<boolean> {
  const stats = await lstat(paths.dir);
  if (!stats.isDirectory() || stats.uid !== SERVICE_USER.uid || (await pathExists(paths.projectMarker))) return false;
  const runAs = await users.recorded(paths.dir);
  if (runAs === undefined) return false;
  return (await readChildFile(join(paths.pgdata, "PG_VERSION"), runAs))?.trim() === String(major);
}
