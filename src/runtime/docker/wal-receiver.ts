// The WAL receiver: a container sota-walreceiver-{slug} beside the project's
// PostgreSQL, running pg_receivewal from the same image (so the versions
// match) as that image's unprivileged postgres user, on the project's private
// network only. It streams from the physical slot sota_wal as the replication
// role sota_wal (SCRAM; its password lives only in this container's
// environment, as the image's POSTGRES_PASSWORD does in PostgreSQL's) into one
// directory of the WAL archive volume, the generation named by its label.
// --synchronous flushes every write and reports it at once, so the slot (and
// flushWal) know what is safe. pg_receivewal reconnects by itself while
// PostgreSQL restarts; the restart policy brings the container back.
//
// Nothing of a tenant's reaches this container: its PostgreSQL (even as a
// superuser of its own cluster) only answers the receiver's connection, and
// the archive volume is mounted nowhere the tenant runs.
import type Docker from "dockerode";
import { RuntimeError, type RuntimeTarget } from "../runtime.js";
import { hardenedHostConfig, type Hardening } from "./container-hardening.js";
import type { DockerEngine } from "./docker-engine.js";
import { isConflict, isNotFound } from "./docker-errors.js";
import { CONTAINER_PORT, ownershipProblem, PGDATA, WAL_ARCHIVE_DIR, type ProjectNames } from "./docker-names.js";
import { PG_OS_USER } from "./postgres-container.js";
import { LABEL_WAL_GENERATION, WAL_RECEIVER_APP, WAL_ROLE, WAL_SLOT } from "./wal-names.js";

/** pg_receivewal is one process; execs (listing, reading, pruning the archive) come on top. */
const RECEIVER_HARDENING: Hardening = { capabilities: [], pidsLimit: 64 };
const RECEIVER_MEMORY_BYTES = 256 * 1024 * 1024;
/**
 * pg_receivewal reconnecting to a server that is gone (its name no longer
 * resolves) heeds SIGINT only once the lookup gives up; --synchronous has
 * already flushed all it received, so a kill after this loses nothing.
 */
const STOP_TIMEOUT_SECONDS = 1;
const PASSWORD_ENV = "PGPASSWORD";

/**
 * The generation's directory is made here, by the postgres user, in an
 * archive root handed to that user when the receiver was set up; umask 077
 * keeps what pg_receivewal writes to itself.
 */
const RECEIVER_SCRIPT = `umask 077
mkdir -p "$1" || exit 64
exec pg_receivewal --directory="$1" --slot=${WAL_SLOT} --synchronous --no-password`;

export interface ReceiverWanted {
  readonly image: string;
  readonly privateNetworkId: string;
  readonly generation: string;
  readonly password: string;
}

/** The project's receiver, or undefined; a conflict when the name is held by something not its own. */
export async function inspectReceiver(
  engine: DockerEngine,
  target: RuntimeTarget,
  names: ProjectNames,
): Promise<Docker.ContainerInspectInfo | undefined> {
  const info = await engine.inspectContainer(names.walReceiver);
  if (!info) return undefined;
  const problem = ownershipProblem("container", names.walReceiver, info.Config.Labels, target, "walreceiver");
  if (problem) throw new RuntimeError("conflict", problem);
  return info;
}

export function receiverGeneration(info: Docker.ContainerInspectInfo | undefined): string | undefined {
  return info?.Config.Labels?.[LABEL_WAL_GENERATION];
}

export function receiverPassword(info: Docker.ContainerInspectInfo | undefined): string | undefined {
  const entry = info?.Config.Env?.find((item) => item.startsWith(`${PASSWORD_ENV}=`));
  return entry?.slice(PASSWORD_ENV.length + 1) || undefined;
}

/** Whether `info` is the receiver `wanted` describes: same generation, image, network and password. */
export function receiverMatches(info: Docker.ContainerInspectInfo, wanted: ReceiverWanted): boolean {
  return (
    receiverGeneration(info) === wanted.generation &&
    info.Image === wanted.image &&
    receiverPassword(info) === wanted.password &&
    Object.values(info.NetworkSettings.Networks ?? {}).some((network) => network.NetworkID === wanted.privateNetworkId)
  );
}

export async function createReceiver(
  engine: DockerEngine,
  target: RuntimeTarget,
  names: ProjectNames,
  wanted: ReceiverWanted,
): Promise<Docker.ContainerInspectInfo> {
  return engine.createContainer(target, names.walReceiver, "walreceiver", {
    Image: wanted.image,
    User: PG_OS_USER,
    Entrypoint: ["sh", "-c", RECEIVER_SCRIPT, "sh", `${WAL_ARCHIVE_DIR}/${wanted.generation}`],
    Cmd: [],
    Env: [
      `PGHOST=${names.postgres}`,
      `PGPORT=${CONTAINER_PORT}`,
      `PGUSER=${WAL_ROLE}`,
      `${PASSWORD_ENV}=${wanted.password}`,
      `PGAPPNAME=${WAL_RECEIVER_APP}`,
      "PGCONNECT_TIMEOUT=10",
    ],
    Labels: { [LABEL_WAL_GENERATION]: wanted.generation },
    StopSignal: "SIGINT",
    HostConfig: {
      Runtime: "runc",
      RestartPolicy: { Name: "unless-stopped" },
      NetworkMode: wanted.privateNetworkId,
      ReadonlyRootfs: true,
      Memory: RECEIVER_MEMORY_BYTES,
      MemorySwap: RECEIVER_MEMORY_BYTES,
      ...hardenedHostConfig(RECEIVER_HARDENING),
      Mounts: [
        { Type: "volume", Source: names.walVolume, Target: WAL_ARCHIVE_DIR },
        // Covers the image's PGDATA volume, which would otherwise leave an anonymous volume.
        { Type: "tmpfs", Source: "", Target: PGDATA },
      ],
    },
  });
}

/** Stops the receiver (by id when given: only that container, never one made since under the name). */
export async function stopReceiver(engine: DockerEngine, names: ProjectNames, id = names.walReceiver): Promise<void> {
  await engine.call(`stopping container ${names.walReceiver}`, async () => {
    try {
      await engine.docker.getContainer(id).stop({ t: STOP_TIMEOUT_SECONDS });
    } catch (error) {
      // 304: already stopped.
      if (!isNotFound(error) && (error as { statusCode?: number }).statusCode !== 304) throw error;
    }
  });
}

export async function removeReceiver(engine: DockerEngine, names: ProjectNames, id = names.walReceiver): Promise<void> {
  await stopReceiver(engine, names, id);
  await engine.call(`removing container ${names.walReceiver}`, async () => {
    try {
      await engine.docker.getContainer(id).remove({ force: true, v: true });
    } catch (error) {
      // 409: another service process is removing it.
      if (!isNotFound(error) && !isConflict(error)) throw error;
    }
  });
  engine.logger.info({ container: names.walReceiver }, "WAL receiver removed");
}
