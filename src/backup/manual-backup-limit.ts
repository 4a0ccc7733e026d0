// How many manual backups a project may start in a rolling window. A backup
// is a full copy of the database on the disk every tenant shares, kept for
// the retention period: without a limit, one project token taking backups
// back to back fills that disk for everyone. A sliding log (the start times
// of the last `count` backups) rather than fixed buckets: no burst of twice
// the limit across a bucket edge, and the wait it reports is exact.
//
// Kept in memory: a restart forgets it, which a tenant cannot cause.
export interface RollingLimit {
  readonly count: number;
  readonly windowMs: number;
}

export class ManualBackupLimit {
  /** Per project, the start times (ms) still inside the window, oldest first. */
  private readonly starts = new Map<string, number[]>();

  constructor(
    readonly limit: RollingLimit,
    private readonly nowMs: () => number,
  ) {}

  /** 0 when the project may start one now; else how long until it may (ms). */
  waitMs(projectId: string): number {
    const starts = this.current(projectId);
    if (starts.length < this.limit.count) return 0;
    return starts[starts.length - this.limit.count]! + this.limit.windowMs - this.nowMs();
  }

  /** Counts one start; call only after waitMs() said 0, with nothing awaited in between. */
  take(projectId: string): void {
    const starts = this.current(projectId);
    starts.push(this.nowMs());
    this.starts.set(projectId, starts);
  }

  private current(projectId: string): number[] {
    const since = this.nowMs() - this.limit.windowMs;
    const starts = (this.starts.get(projectId) ?? []).filter((at) => at > since);
    // Projects that stopped asking do not stay in memory.
    if (starts.length === 0) this.starts.delete(projectId);
    else this.starts.set(projectId, starts);
    return starts;
  }
}
