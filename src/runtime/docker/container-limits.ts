// The PostgreSQL container's resource limits: memory (swap included), CPUs,
// pids and /dev/shm, set on creation through HostConfig, changed in place on
// a running container where the engine can (docker update: all but shm), and
// read back with the container's out-of-memory kills.
import type Docker from "dockerode";
import { loggableError } from "../../log.js";
import type { LimitsStatus, ResourceLimits } from "../shared/resource-limits.js";
import { POSTGRES_HARDENING } from "./container-hardening.js";
import type { DockerEngine } from "./docker-engine.js";
import type { ProjectNames } from "./docker-names.js";

const MIB = 1024 * 1024;

export type LimitFields = Pick<Docker.HostConfig, "Memory" | "MemorySwap" | "NanoCpus" | "PidsLimit" | "ShmSize">;

/**
 * Swap counts against the memory limit too: swap is the host's, shared by
 * every tenant. A pids limit always stays (0 keeps the hardening's): it is
 * what keeps a fork bomb inside the container.
 */
export function limitFields(limits: ResourceLimits): LimitFields {
  return {
    ...(limits.memoryMb > 0 ? { Memory: limits.memoryMb * MIB, MemorySwap: limits.memoryMb * MIB } : {}),
    ...(limits.cpus > 0 ? { NanoCpus: Math.round(limits.cpus * 1e9) } : {}),
    PidsLimit: limits.pids > 0 ? limits.pids : POSTGRES_HARDENING.pidsLimit,
    ...(limits.shmMb > 0 ? { ShmSize: limits.shmMb * MIB } : {}),
  };
}

/**
 * Changes in place what differs and the engine can change on a running
 * container (memory, CPUs, pids): the server keeps running. /dev/shm cannot
 * be resized in place: a container whose shm differs keeps it (a warning
 * says so) until the operator removes the container, not its volume, and the
 * next ensure makes it anew on the same data. A limit configured away (0)
 * stays until then too.
 */
export async function limitInPlace(
  engine: DockerEngine,
  names: ProjectNames,
  existing: Docker.ContainerInspectInfo,
  wanted: LimitFields,
): Promise<void> {
  const host = existing.HostConfig;
  const update: LimitFields = {
    ...(host.PidsLimit !== wanted.PidsLimit ? { PidsLimit: wanted.PidsLimit } : {}),
    ...(wanted.Memory !== undefined && host.Memory !== wanted.Memory ? { Memory: wanted.Memory, MemorySwap: wanted.MemorySwap } : {}),
    ...(wanted.NanoCpus !== undefined && host.NanoCpus !== wanted.NanoCpus ? { NanoCpus: wanted.NanoCpus } : {}),
  };
  if (Object.keys(update).length > 0) {
    try {
      await engine.call(`updating the limits of ${names.postgres}`, () => engine.docker.getContainer(existing.Id).update(update));
      engine.logger.info({ container: names.postgres, ...update }, "PostgreSQL container's limits updated in place");
    } catch (error) {
      // A memory limit below what the server holds now is refused by the
      // kernel; the database keeps serving, and the next ensure tries again.
      engine.logger.warn({ container: names.postgres, err: loggableError(error) }, "could not update the PostgreSQL container's limits in place");
    }
  }
  if (wanted.ShmSize !== undefined && host.ShmSize !== wanted.ShmSize) {
    engine.logger.warn(
      { container: names.postgres, shmMb: Math.round((host.ShmSize ?? 0) / MIB), wantedShmMb: wanted.ShmSize / MIB },
      "PostgreSQL container's /dev/shm size cannot change in place; keeping it: remove the container, not its volume, and ensure the database again to re-create it with the new size",
    );
  }
}

/**
 * The limits the running container has, and the kernel's OOM kills in its
 * memory cgroup (read inside: with a private cgroup namespace the container
 * sees its own at /sys/fs/cgroup, v2's memory.events or v1's memory.oom_control).
 */
export async function postgresLimitsStatus(engine: DockerEngine, container: Docker.Container): Promise<LimitsStatus> {
  const info = await engine.call("inspecting the PostgreSQL container", () => container.inspect());
  const host = info.HostConfig;
  const outcome = await engine.exec(container, "reading the out-of-memory count", {
    cmd: ["sh", "-c", "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null; true"],
  });
  const match = /^oom_kill (\d+)$/m.exec(outcome.stdout);
  return {
    mechanism: "docker",
    limits: {
      memoryMb: Math.round((host.Memory ?? 0) / MIB),
      cpus: (host.NanoCpus ?? 0) / 1e9,
      pids: host.PidsLimit ?? 0,
      shmMb: Math.round((host.ShmSize ?? 0) / MIB),
    },
    oomKills: match ? Number(match[1]) : info.State.OOMKilled ? 1 : 0,
  };
}
