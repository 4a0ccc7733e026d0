// A database's resource limits: what the service enforces on one project's
// PostgreSQL (and, in the process runtime, its PgBouncer beside it) so that no
// tenant can eat the host's memory, CPU or process table.

export interface ResourceLimits {
  /** Memory (swap included) in MiB; 0: no limit. */
  readonly memoryMb: number;
  /** CPUs' worth of time per period (0.5, 1, 2...); 0: no limit. */
  readonly cpus: number;
  /** Processes and threads at once; 0: no limit. */
  readonly pids: number;
  /** /dev/shm in MiB (Docker runtime only: the process runtime shares the host's); 0: the engine's default. */
  readonly shmMb: number;
}

/** How a runtime enforces limits on this host: "none" means they are not enforced. */
export type LimitsMechanism = "cgroup-v2" | "cgroup-v1" | "docker" | "none";

/** What a runtime reports about one database's limits. */
export interface LimitsStatus {
  readonly mechanism: LimitsMechanism;
  /** The limits the database runs with (what is enforced, when mechanism is not "none"). */
  readonly limits: ResourceLimits;
  /** Times the kernel killed one of its processes for running out of memory, since it was started by this service. */
  readonly oomKills: number;
}

/** The spec's override, field by field, over the runtime's defaults; a field the override leaves out keeps its default. */
export function effectiveLimits(defaults: ResourceLimits, override: Partial<ResourceLimits> | undefined): ResourceLimits {
  return { ...defaults, ...Object.fromEntries(Object.entries(override ?? {}).filter(([, value]) => value !== undefined)) };
}

export function sameLimits(a: ResourceLimits, b: ResourceLimits): boolean {
  return a.memoryMb === b.memoryMb && a.cpus === b.cpus && a.pids === b.pids && a.shmMb === b.shmMb;
}
