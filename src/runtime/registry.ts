// The Runtime drivers there are, by the name SOTA_RUNTIME gives them, and how
// each is made from the configuration. Adding a driver is one entry here:
// config.ts accepts exactly these names, and app.ts asks only this table. Each
// driver's code (and, for Docker, dockerode) is loaded only when it is chosen.
import type { Config } from "../config.js";
import type { Logger } from "../log.js";
import type { PortRegistry } from "./port-registry.js";
import type { Runtime } from "./runtime.js";

/** What the composition hands a driver besides the configuration. */
export interface RuntimeHost {
  readonly config: Config;
  /** Durable project → port allocations (drivers that bind host ports). */
  readonly ports: PortRegistry;
  readonly logger: Logger;
}

export interface RuntimeDriver {
  create(host: RuntimeHost): Promise<Runtime>;
  /**
   * Where backups may make scratch files next to the databases' own, for a
   * driver whose databases live on this host's disk; unset for one whose data
   * the service cannot see (Docker volumes).
   */
  scratchDir?(config: Config): string;
  /**
   * Its databases are children of the service on this host: one replica per
   * state may run it (a second one is refused at start); unset for a driver
   * whose databases every replica reaches (Docker on one engine).
   */
  readonly hostBound?: boolean;
}

const DRIVERS = {
  process: {
    async create({ config, ports, logger }) {
      const { createProcessRuntime } = await import("./process/index.js");
      return createProcessRuntime({
        dataDir: config.dataDir,
        ...(config.process.pgBinDir ? { pgBinDir: config.process.pgBinDir } : {}),
        ...(config.process.pgbouncerBin ? { pgbouncerBin: config.process.pgbouncerBin } : {}),
        ...(config.process.runAsUser ? { runAsUser: config.process.runAsUser } : {}),
        portRange: config.process.poolerPorts,
        warmPool: config.process.warmPool,
        spareCopies: config.process.spareCopies,
        limits: config.limits,
        ports,
        readyTimeoutMs: config.readyTimeoutMs,
        logger: logger.child({ runtime: "process" }),
      });
    },
    scratchDir: (config) => config.dataDir,
    hostBound: true,
  },
  docker: {
    async create({ config, logger }) {
      const [{ createDockerRuntime }, { dockerConnection }, { default: Docker }] = await Promise.all([
        import("./docker/index.js"),
        import("./docker/docker-host.js"),
        import("dockerode"),
      ]);
      return createDockerRuntime({
        docker: new Docker(dockerConnection(config.docker.host)),
        postgresImage: config.docker.postgresImage,
        pgbouncerImage: config.docker.pgbouncerImage,
        ...(config.docker.pgbouncerUser ? { pgbouncerUser: config.docker.pgbouncerUser } : {}),
        appNetwork: config.docker.network,
        ...(config.docker.publishHost ? { publishHost: config.docker.publishHost } : {}),
        postgresMemoryMb: config.docker.postgresMemoryMb,
        limits: { cpus: config.limits.cpus, pids: config.limits.pids, shmMb: config.limits.shmMb },
        readyTimeoutMs: config.readyTimeoutMs,
        logger: logger.child({ runtime: "docker" }),
      });
    },
  },
} satisfies Record<string, RuntimeDriver>;

export type RuntimeKind = keyof typeof DRIVERS;

/** SOTA_RUNTIME's values, the default first. */
export const RUNTIME_KINDS = Object.keys(DRIVERS) as RuntimeKind[];

export function runtimeDriver(kind: RuntimeKind): RuntimeDriver {
  return DRIVERS[kind];
}
