// Short-lived helper containers that work on a project's volumes where no
// running container of the project mounts them: restoring a base backup into
// the data volume, reading or pruning the WAL archive while its receiver is
// down. A helper runs the database's own PostgreSQL image (its tar, its
// postgres user), has no network, keeps only CHOWN (for the one root command
// that hands a fresh volume to the postgres user; everything else runs as
// postgres, which holds no capability), and idles until the work is done
// through `docker exec`, each naming its user. It removes itself when its idle time ends, so one
// left by a service that died goes away on its own.
import { randomBytes } from "node:crypto";
import type Docker from "dockerode";
import { loggableError } from "../../log.js";
import type { RuntimeTarget } from "../runtime.js";
import { hardenedHostConfig, type Hardening } from "./container-hardening.js";
import type { DockerEngine } from "./docker-engine.js";
import { isNotFound } from "./docker-errors.js";
import { PGDATA, projectLabels } from "./docker-names.js";

/** A day: longer than any restore the helper serves, short enough that a forgotten one goes. */
const IDLE_SECONDS = 86_400;
const HELPER_HARDENING: Hardening = { capabilities: ["CHOWN"], pidsLimit: 64 };

export interface HelperMount {
  readonly volume: string;
  readonly target: string;
  readonly readOnly?: boolean;
}

export interface HelperSpec {
  /** Name prefix (the project's); a random suffix keeps helpers of one project apart. */
  readonly namePrefix: string;
  readonly image: string;
  readonly mounts: readonly HelperMount[];
}

/** Runs `work` with a started helper, removing the helper afterwards whatever happened. */
export async function withHelper<T>(
  engine: DockerEngine,
  target: RuntimeTarget,
  spec: HelperSpec,
  work: (container: Docker.Container) => Promise<T>,
): Promise<T> {
  const container = await startHelper(engine, target, spec);
  try {
    return await work(container);
  } finally {
    await removeHelper(engine, container);
  }
}

export async function startHelper(engine: DockerEngine, target: RuntimeTarget, spec: HelperSpec): Promise<Docker.Container> {
  const name = `${spec.namePrefix}-${randomBytes(4).toString("hex")}`;
  const mounts: Docker.MountSettings[] = spec.mounts.map((mount) => ({
    Type: "volume",
    Source: mount.volume,
    Target: mount.target,
    ReadOnly: mount.readOnly ?? false,
  }));
  // The image declares PGDATA a volume: without a mount there, every helper
  // would leave an anonymous volume behind.
  if (!spec.mounts.some((mount) => mount.target === PGDATA)) mounts.push({ Type: "tmpfs", Source: "", Target: PGDATA });
  const container = await engine.call(`creating helper container ${name}`, () =>
    engine.docker.createContainer({
      name,
      Image: spec.image,
      Entrypoint: ["sleep"],
      Cmd: [String(IDLE_SECONDS)],
      // Root for the one command that needs CHOWN: Docker grants a
      // container's capabilities to root's execs only when its own user is
      // root. Every other exec names the postgres user, and holds none.
      User: "root",
      Labels: projectLabels(target, "helper", engine.labels),
      HostConfig: {
        Runtime: "runc",
        NetworkMode: "none",
        AutoRemove: true,
        ...hardenedHostConfig(HELPER_HARDENING),
        Mounts: mounts,
      },
    }),
  );
  try {
    await engine.call(`starting helper container ${name}`, () => container.start());
  } catch (error) {
    await removeHelper(engine, container);
    throw error;
  }
  return container;
}

export async function removeHelper(engine: DockerEngine, container: Docker.Container): Promise<void> {
  try {
    await container.remove({ force: true, v: true });
  } catch (error) {
    if (!isNotFound(error) && !/already in progress/i.test(String((error as Error).message))) {
      engine.logger.warn({ container: container.id, err: loggableError(error) }, "could not remove a helper container");
    }
  }
}

/** The project's helpers (left by a service that died while using them), for remove. */
export async function projectHelpers(engine: DockerEngine, target: RuntimeTarget): Promise<string[]> {
  const listed = await engine.call("listing helper containers", () =>
    engine.docker.listContainers({
      all: true,
      filters: { label: [`io.sota.project-id=${target.projectId}`, "io.sota.role=helper", "io.sota.managed=true"] },
    }),
  );
  return listed.map((container) => container.Id);
}
