// The marker of a recovery in progress: a container sota-db-{slug}-recovery
// that is created and never started (no process, no network), whose labels
// say what the project was before the recovery touched it. It exists from
// before the first change until the recovery is committed (or undone), so a
// recovery cut short by a crash of the service is found and undone by the
// project's next ensure or recovery. Labels are the engine's: no tenant
// process can change them.
import type Docker from "dockerode";
import { RuntimeError, type RuntimeTarget } from "../runtime.js";
import { hardenedHostConfig } from "./container-hardening.js";
import type { DockerEngine } from "./docker-engine.js";
import { isConflict, isNotFound } from "./docker-errors.js";
import { ownershipProblem, PGDATA, type ProjectNames } from "./docker-names.js";
import { GENERATION } from "./wal-names.js";

const PREFIX = "io.sota.recovery.";

/** What the project was when the recovery began. */
export interface RecoveryBefore {
  /** Any of its objects existed (false: a clone, or a database this host does not have). */
  readonly existed: boolean;
  readonly volumeExisted: boolean;
  readonly postgresExisted: boolean;
  readonly postgresRunning: boolean;
  /** The generation its WAL receiver streamed into, if it had one. */
  readonly generation: string | undefined;
}

export async function createMarker(
  engine: DockerEngine,
  target: RuntimeTarget,
  names: ProjectNames,
  image: string,
  before: RecoveryBefore,
): Promise<void> {
  const labels: Record<string, string> = {
    [`${PREFIX}existed`]: String(before.existed),
    [`${PREFIX}volume-existed`]: String(before.volumeExisted),
    [`${PREFIX}postgres-existed`]: String(before.postgresExisted),
    [`${PREFIX}postgres-running`]: String(before.postgresRunning),
    [`${PREFIX}generation`]: before.generation ?? "",
  };
  await engine.createContainer(target, names.recoveryMarker, "recovery", {
    Image: image,
    Entrypoint: ["true"],
    Cmd: [],
    Labels: labels,
    HostConfig: {
      Runtime: "runc",
      NetworkMode: "none",
      ...hardenedHostConfig({ capabilities: [], pidsLimit: 8 }),
      // Covers the image's PGDATA volume: no anonymous volume is made for the marker.
      Mounts: [{ Type: "tmpfs", Source: "", Target: PGDATA }],
    },
  });
}

/** The marker's record, or undefined when no recovery of the project is under way. */
export async function readMarker(engine: DockerEngine, target: RuntimeTarget, names: ProjectNames): Promise<RecoveryBefore | undefined> {
  const info = await engine.inspectContainer(names.recoveryMarker);
  if (!info) return undefined;
  const problem = ownershipProblem("container", names.recoveryMarker, info.Config.Labels, target, "recovery");
  if (problem) throw new RuntimeError("conflict", problem);
  return markerRecord(info);
}

function markerRecord(info: Docker.ContainerInspectInfo): RecoveryBefore {
  const labels = info.Config.Labels ?? {};
  const flag = (name: string): boolean => labels[`${PREFIX}${name}`] === "true";
  const generation = labels[`${PREFIX}generation`] ?? "";
  return {
    existed: flag("existed"),
    volumeExisted: flag("volume-existed"),
    postgresExisted: flag("postgres-existed"),
    postgresRunning: flag("postgres-running"),
    generation: GENERATION.test(generation) ? generation : undefined,
  };
}

/** Removing the marker commits (or closes the undo of) a recovery. */
export async function removeMarker(engine: DockerEngine, names: ProjectNames): Promise<void> {
  await engine.call(`removing container ${names.recoveryMarker}`, async () => {
    try {
      await engine.docker.getContainer(names.recoveryMarker).remove({ force: true, v: true });
    } catch (error) {
      if (!isNotFound(error) && !isConflict(error)) throw error;
    }
  });
}
