// The Docker driver's settings, resolved once from its options, and where
// they decide something: which network apps join, what address the pooler
// is reached at.
import type { ResourceLimits } from "../shared/resource-limits.js";
import type Docker from "dockerode";
import type { Endpoint, RuntimeTarget } from "../runtime.js";
import { CONTAINER_PORT, PORT_KEY, projectNames, type ProjectNames } from "./docker-names.js";

/** The app-facing network mode in which each project gets its own network, sota-app-{slug}. */
export const PER_PROJECT_NETWORK = "per-project";

export const DEFAULT_POSTGRES_IMAGE = "postgres:17";
/** Built locally by scripts/docker/build-images.sh (there is no official PgBouncer image). */
export const DEFAULT_PGBOUNCER_IMAGE = "sota-db/pgbouncer:1.24-trixie";
/** The product spec's shared network: apps and PgBouncer meet there. */
export const DEFAULT_APP_NETWORK = "traefik-public";
export const DEFAULT_READY_TIMEOUT_MS = 120_000;
/**
 * Room for PostgreSQL's defaults (128 MB shared buffers, a pool of 20
 * backends with their work_mem) many times over; a tenant past it is OOM-killed
 * inside its own container instead of the host's OOM killer choosing a victim.
 */
export const DEFAULT_POSTGRES_MEMORY_MB = 2048;
/**
 * max_slot_wal_keep_size: WAL the receiver's slot may hold while the receiver
 * is down. Past it the slot is given up (the disk matters more) and the next
 * ensure starts a new WAL generation.
 */
export const DEFAULT_WAL_SLOT_KEEP_MB = 1024;
/** How long a recovery may replay WAL before it is given up and undone. */
export const DEFAULT_RECOVERY_TIMEOUT_MS = 30 * 60_000;
/** Docker's own /dev/shm of 64 MB is too small for parallel query's shared memory. */
export const DEFAULT_POSTGRES_SHM_MB = 256;

export interface DriverSettings {
  readonly postgresImage: string;
  readonly pgbouncerImage: string;
  readonly appNetwork: string;
  readonly publishHost: string | undefined;
  readonly readyTimeoutMs: number;
  /** Memory limit of each PostgreSQL container, swap included; 0: none. */
  readonly postgresMemoryMb: number;
  /** Each PostgreSQL container's limits unless its project overrides them (memoryMb: postgresMemoryMb). */
  readonly limits: ResourceLimits;
  /** max_slot_wal_keep_size of the WAL receiver's slot, in MB. */
  readonly walSlotKeepMb: number;
  /** Bound on a point-in-time recovery's replay. */
  readonly recoveryTimeoutMs: number;
}

export function isPerProject(settings: DriverSettings): boolean {
  return settings.appNetwork === PER_PROJECT_NETWORK;
}

export function appNetworkName(settings: DriverSettings, names: ProjectNames): string {
  return isPerProject(settings) ? names.projectAppNetwork : settings.appNetwork;
}

function isLoopbackHost(host: string): boolean {
  return host === "::1" || host.startsWith("127.");
}

/** Where apps reach the pooler, plus the published loopback address when there is one. */
export function endpointOf(
  settings: DriverSettings,
  target: RuntimeTarget,
  pgbouncer: Docker.ContainerInspectInfo,
): Endpoint {
  const names = projectNames(target);
  const network = appNetworkName(settings, names);
  const published = pgbouncer.NetworkSettings.Ports?.[PORT_KEY]?.find((binding) => binding.HostPort);
  const host = settings.publishHost === "0.0.0.0" ? "127.0.0.1" : settings.publishHost;
  const loopback =
    published && host && isLoopbackHost(host) ? { host, port: Number(published.HostPort) } : undefined;
  return { host: names.pgbouncer, port: CONTAINER_PORT, network, ...(loopback ? { loopback } : {}) };
}
