// The project's data volume. Volume creation is idempotent in the engine, so
// whoever created it, it is checked to be this project's before use.
import { RuntimeError, type RuntimeTarget } from "../runtime.js";
import type { DockerEngine } from "./docker-engine.js";
import { isNotFound } from "./docker-errors.js";
import { ownershipProblem, projectLabels, type ProjectNames } from "./docker-names.js";

/** Labels of a volume under `name`, or undefined when there is none. */
export async function volumeLabels(
  engine: DockerEngine,
  name: string,
): Promise<Readonly<Record<string, string>> | undefined> {
  const found = await engine.call(`inspecting volume ${name}`, async () => {
    try {
      return await engine.docker.getVolume(name).inspect();
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  });
  return found ? (found.Labels ?? {}) : undefined;
}

/** The project's data volume: false when missing, a conflict when foreign. */
export async function projectVolumeExists(engine: DockerEngine, target: RuntimeTarget, names: ProjectNames): Promise<boolean> {
  const labels = await volumeLabels(engine, names.volume);
  if (!labels) return false;
  const problem = ownershipProblem("volume", names.volume, labels, target, "data");
  if (problem) throw new RuntimeError("conflict", problem);
  return true;
}

export async function createVolume(
  engine: DockerEngine,
  name: string,
  labels: Record<string, string>,
): Promise<void> {
  await engine.call(`creating volume ${name}`, async () => {
    await engine.docker.createVolume({ Name: name, Labels: labels });
  });
}

export async function createProjectVolume(engine: DockerEngine, target: RuntimeTarget, names: ProjectNames): Promise<void> {
  await createVolume(engine, names.volume, projectLabels(target, "data", engine.labels));
  // Whoever created it (creation is idempotent), it must be this project's.
  await projectVolumeExists(engine, target, names);
  engine.logger.info({ volume: names.volume }, "volume created");
}

export async function removeVolume(engine: DockerEngine, name: string): Promise<void> {
  await engine.call(`removing volume ${name}`, async () => {
    try {
      await engine.docker.getVolume(name).remove();
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  });
}
