// Removing a project: its processes stopped (or, after a restart of the
// service, what an earlier run left), its port released, its files and its OS
// user deleted unless the data is kept.
import { join } from "node:path";
import { loggableError } from "../../log.js";
import type { RemoveOptions, RuntimeTarget } from "../runtime.js";
import type { DriverParts } from "./driver-parts.js";
import { instancePaths, socketDirInside } from "./instance/instance-paths.js";
import { readIfExists, removeTree } from "./host/owned-files.js";
import { stopInstance } from "./instance/project-instance.js";
import { stopStalePgbouncer, stopStalePostmaster } from "./children/stale-process.js";
import { slugTaken } from "../shared/target-checks.js";

/** Under the slug's lock. */
export async function removeInstance(parts: DriverParts, target: RuntimeTarget, options: RemoveOptions): Promise<void> {
  const { logger } = parts;
  const paths = instancePaths(parts.dataDir, target.slug);
  const marker = (await readIfExists(paths.projectMarker))?.trim();
  if (marker !== undefined && marker !== target.projectId) throw slugTaken(target.slug);
  const instance = parts.instances.get(target.slug);
  if (instance) {
    await stopInstance(instance);
    parts.instances.delete(target.slug);
  } else if (marker !== undefined) {
    await stopStalePgbouncer(paths.pgbouncerPid, paths.pgbouncerIni, logger);
    // Where an earlier release kept it.
    await stopStalePgbouncer(join(paths.dir, "pgbouncer.pid"), paths.pgbouncerIni, logger);
    await stopStalePostmaster(paths.pgdata, logger);
  }
  await parts.ports.release(target.projectId);
  if (!options.keepData) {
    // Its user's last processes (anything a tenant started in the background)
    // end before the files go, so none can race the removal.
    await parts.users.release(paths.dir);
    await removeTree(paths.dir);
    if (!socketDirInside(paths)) await removeTree(paths.socketDir);
  }
  // Empty once its processes are gone (all of them when the data goes: its user's were ended above).
  await parts.cgroups
    .instance(target.slug)
    .remove()
    .catch((error: unknown) => logger.warn({ slug: target.slug, err: loggableError(error) }, "could not remove the database's cgroup"));
  logger.info({ slug: target.slug, projectId: target.projectId, keepData: options.keepData }, "database removed");
}
