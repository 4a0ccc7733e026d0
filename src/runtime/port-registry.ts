// Durable allocation of loopback ports for poolers, so a database keeps its
// port (and therefore its DATABASE_URL) across restarts of the service.

export interface PortRange {
  readonly min: number;
  readonly max: number;
}

export interface PortRegistry {
  /**
   * The port recorded for the project, or a newly recorded free one from the
   * range. Atomic: two projects never get the same port. Throws when the range
   * is exhausted.
   */
  allocate(projectId: string, range: PortRange, isUsable?: (port: number) => boolean): number;
  /** Forget the project's port so it can be reused. */
  release(projectId: string): void;
}
