// Durable allocation of loopback ports for poolers, so a database keeps its
// port (and therefore its DATABASE_URL) across restarts of the service. Its own
// port, apart from the Store: only the process runtime needs it, and the state
// stores implement both.

export interface PortRange {
  readonly min: number;
  readonly max: number;
}

export interface PortRegistry {
  /**
   * The port recorded for the project, or a newly recorded free one from the
   * range. Atomic: two projects never get the same port, even through two
   * services sharing one state store. `isUsable` is asked inside the
   * allocation, so it must answer at once (the caller probes the host first).
   * Rejects when the range is exhausted. `preferred`: the port to record when
   * the project has none and it is in the range, free and usable (the port a
   * database had on the host it is recovered from).
   */
  allocate(projectId: string, range: PortRange, isUsable?: (port: number) => boolean, preferred?: number): Promise<number>;
  /** Forget the project's port so it can be reused. */
  release(projectId: string): Promise<void>;
}

/** `preferred` when it is in the range, free and usable, else the lowest port that is; throws when none is left. */
export function firstFreePort(range: PortRange, taken: ReadonlySet<number>, isUsable: (port: number) => boolean, preferred?: number): number {
  if (preferred !== undefined && preferred >= range.min && preferred <= range.max && !taken.has(preferred) && isUsable(preferred)) return preferred;
  for (let port = range.min; port <= range.max; port++) {
    if (!taken.has(port) && isUsable(port)) return port;
  }
  throw new Error(`no free pooler port left in ${range.min}-${range.max}`);
}
