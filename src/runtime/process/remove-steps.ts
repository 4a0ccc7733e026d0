// Removing a project: its processes stopped (or, after a restart of the
// service, what an earlier run left), its port released, its files deleted
// unless the data is kept.
import { rm } from "node:fs/promises";
import type { RemoveOptions, RuntimeTarget } from "../runtime.js";
import type { DriverParts } from "./driver-parts.js";
import { instancePaths, socketDirInside } from "./instance-paths.js";
import { readIfExists } from "./owned-files.js";
import { stopInstance } from "./project-instance.js";
import { stopStalePgbouncer, stopStalePostmaster } from "./stale-process.js";
import { slugTaken } from "./target-checks.js";

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
    await stopStalePostmaster(paths.pgdata, logger);
  }
  await parts.ports.release(target.projectId);
  if (!options.keepData) {
    await rm(paths.dir, { recursive: true, force: true });
    if (!socketDirInside(paths)) await rm(paths.socketDir, { recursive: true, force: true });
  }
  logger.info({ slug: target.slug, projectId: target.projectId, keepData: options.keepData }, "database removed");
}
