// Verifications and restores each load a whole backup into a scratch copy of
// the database: disk, CPU and I/O on a machine every tenant shares. A few run
// at once over all projects, and at most one per project, so one tenant
// cannot take every slot. A caller of the API that finds no slot is refused at
// once (it can retry) rather than queued: a queued request would hold its
// connection open for minutes behind other tenants' work. The schedule's own
// verifications are not callers waiting on a connection: they queue.
import { ConcurrencyLimit } from "./concurrency-limit.js";
import { loadSlotsBusy, projectLoadBusy } from "./backup-errors.js";

export class LoadSlots {
  private readonly limit: ConcurrencyLimit;
  /** Projects with a load started through the API. */
  private readonly projects = new Set<string>();

  constructor(concurrency: number) {
    this.limit = new ConcurrencyLimit(concurrency);
  }

  /** Starts `task` now, or throws RESOURCE_EXHAUSTED without running it. */
  runNow<T>(projectId: string, task: () => Promise<T>): Promise<T> {
    if (this.projects.has(projectId)) throw projectLoadBusy();
    this.projects.add(projectId);
    const started = this.limit.tryRun(async () => {
      try {
        return await task();
      } finally {
        this.projects.delete(projectId);
      }
    });
    if (started) return started;
    this.projects.delete(projectId);
    throw loadSlotsBusy();
  }

  /** Waits for a slot; rejects with LimitClosedError once closed. */
  runQueued<T>(task: () => Promise<T>): Promise<T> {
    return this.limit.run(task);
  }

  /** Queued tasks will not start. */
  close(): void {
    this.limit.close();
  }
}
