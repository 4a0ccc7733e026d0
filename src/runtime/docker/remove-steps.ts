// Removing a project: every object is checked before any is touched, so a
// foreign one under a managed name stops the removal before anything is gone.
// The WAL archive goes with the data: both are kept when the data is.
import type { RuntimeTarget, RemoveOptions } from "../runtime.js";
import { isRunning, type DockerEngine } from "./docker-engine.js";
import { isNotFound } from "./docker-errors.js";
import type { ProjectNames } from "./docker-names.js";
import { projectVolumeExists, removeVolume } from "./docker-volumes.js";
import { projectHelpers, removeHelper } from "./helper-container.js";
import { readMarker, removeMarker } from "./recovery-marker.js";
import { archiveExists } from "./wal-archive.js";
import { inspectReceiver, removeReceiver } from "./wal-receiver.js";
import type { ProjectNetworks } from "./project-networks.js";
import { surveyContainers } from "./project-survey.js";

/** PostgreSQL's fast shutdown (SIGINT) normally takes a second; SIGKILL after this. */
const STOP_TIMEOUT_SECONDS = 30;

export async function removeProject(
  engine: DockerEngine,
  networks: ProjectNetworks,
  target: RuntimeTarget,
  names: ProjectNames,
  options: RemoveOptions,
): Promise<void> {
  const survey = await surveyContainers(engine, target, names);
  await networks.checkOwned(target, names);
  const volume = options.keepData ? false : await projectVolumeExists(engine, target, names);
  const receiver = await inspectReceiver(engine, target, names);
  const archive = options.keepData ? false : await archiveExists(engine, target, names);
  const recovering = await readMarker(engine, target, names);

  if (recovering) await removeMarker(engine, names);
  if (receiver) await removeReceiver(engine, names);
  for (const helper of await projectHelpers(engine, target)) await removeHelper(engine, engine.docker.getContainer(helper));

  // The pooler first, then PostgreSQL with a clean shutdown (the data may be kept).
  for (const container of [survey.pgbouncer, survey.postgres]) {
    if (!container) continue;
    const handle = engine.docker.getContainer(container.Id);
    await engine.call(`removing container ${container.Name.replace(/^\//, "")}`, async () => {
      try {
        if (isRunning(container)) await handle.stop({ t: STOP_TIMEOUT_SECONDS }).catch(() => undefined);
        await handle.remove({ force: true, v: true });
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    });
  }
  await networks.remove(target, names);
  if (volume) await removeVolume(engine, names.volume);
  if (archive) await removeVolume(engine, names.walVolume);
  engine.logger.info({ slug: target.slug, projectId: target.projectId, keepData: options.keepData }, "database removed");
}

/**
 * A database whose data is gone (DatabaseSpec.mustExist): its containers are
 * stopped, not removed, so its URL reaches nothing (not a new empty cluster
 * the image may have made) while what is left stays for inspection.
 */
export async function stopLostProject(engine: DockerEngine, target: RuntimeTarget, names: ProjectNames): Promise<void> {
  const survey = await surveyContainers(engine, target, names);
  for (const container of [survey.pgbouncer, survey.postgres]) {
    if (!container || !isRunning(container)) continue;
    await engine.docker
      .getContainer(container.Id)
      .stop({ t: STOP_TIMEOUT_SECONDS })
      .catch((error: unknown) => {
        if (!isNotFound(error)) throw error;
      });
  }
  engine.logger.error({ slug: target.slug, projectId: target.projectId }, "database data lost: its containers are stopped until it is restored");
}
