// Which archive a request names: the running instance's, or, for a database
// not running in this service (stopped, or read as a clone's source), the one
// in its directory, trusted to hold only files of the OS user recorded there.
import type { RuntimeTarget } from "../../runtime.js";
import { slugTaken } from "../../shared/target-checks.js";
import type { DriverParts } from "../driver-parts.js";
import { readIfExists } from "../host/owned-files.js";
import { instancePaths } from "../instance/instance-paths.js";
import { WalArchive } from "./wal-archive.js";

/** Undefined when the target has no archive on this host (no instance, or its OS user is gone). */
export async function findArchive(parts: Pick<DriverParts, "dataDir" | "instances" | "users">, target: RuntimeTarget): Promise<WalArchive | undefined> {
  const instance = parts.instances.get(target.slug);
  if (instance && instance.projectId === target.projectId) return instance.wal.archive;
  const paths = instancePaths(parts.dataDir, target.slug);
  const marker = (await readIfExists(paths.projectMarker))?.trim();
  if (marker === undefined) return undefined;
  if (marker !== target.projectId) throw slugTaken(target.slug);
  const owner = await parts.users.recorded(paths.dir);
  return owner === undefined ? undefined : new WalArchive(paths, owner, target.slug);
}
