// The project's data volume. Volume creation is idempotent in the engine, so
// whoever created it, it is checked to be this project's before use.
import { RuntimeError, type RuntimeTarget } from "../runtime.js";
import type { DockerEngine } from "./docker-engine.js";
import { isNotFound } from "./docker-errors.js";
import { ownershipProblem, projectLabels, type ObjectRole, type ProjectNames } from "./docker-names.js";

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

/** A volume of the project's (`role`: its data, its WAL archive): false when missing, a conflict when foreign. */
export async function ownedVolumeExists(engine: DockerEngine, target: RuntimeTarget, name: string, role: ObjectRole): Promise<boolean> {
  const labels = await volumeLabels(engine, name);
  if (!labels) return false;
  const problem = ownershipProblem("volume", name, labels, target, role);
  if (problem) throw new RuntimeError("conflict", problem);
  return true;
}

/** Creates a volume of the project's when missing; whoever created it (creation is idempotent), it must be the project's. */
export async function createOwnedVolume(engine: DockerEngine, target: RuntimeTarget, name: string, role: ObjectRole): Promise<void> {
  await createVolume(engine, name, projectLabels(target, role, engine.labels));
  await ownedVolumeExists(engine, target, name, role);
  engine.logger.info({ volume: name }, "volume created");
}

/** The project's data volume: false when missing, a conflict when foreign. */
export function projectVolumeExists(engine: DockerEngine, target: RuntimeTarget, names: ProjectNames): Promise<boolean> {
  return ownedVolumeExists(engine, target, names.volume, "data");
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

export function createProjectVolume(engine: DockerEngine, target: RuntimeTarget, names: ProjectNames): Promise<void> {
  return createOwnedVolume(engine, target, names.volume, "data");
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
