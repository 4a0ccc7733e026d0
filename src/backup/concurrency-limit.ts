// At most N tasks at a time, first come first served: a hundred databases
// must not all run pg_dump at 03:00 at once.
export class ConcurrencyLimit {
  private active = 0;
  private readonly waiting: Array<{ start: () => void; cancel: (error: Error) => void }> = [];
  private closed = false;

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new Error("concurrency must be a whole number of at least 1");
  }

  get running(): number {
    return this.active;
  }

  /** Runs `task` once a slot is free; rejects with LimitClosedError if closed before then. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.closed) throw new LimitClosedError();
    if (this.active >= this.limit) {
      // The finishing task hands its slot over: `active` stays as it is.
      await new Promise<void>((start, cancel) => this.waiting.push({ start, cancel }));
    } else {
      this.active++;
    }
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next.start();
      else this.active--;
    }
  }

  /** Runs `task` now when a slot is free; otherwise returns undefined and never runs it. */
  tryRun<T>(task: () => Promise<T>): Promise<T> | undefined {
    // A free slot means nobody waits, so this does not jump a queue; run() takes the slot synchronously.
    if (this.closed || this.active >= this.limit) return undefined;
    return this.run(task);
  }

  /** Tasks not yet started will not start. */
  close(): void {
    this.closed = true;
    for (const waiter of this.waiting.splice(0)) waiter.cancel(new LimitClosedError());
  }
}

export class LimitClosedError extends Error {
  override readonly name = "LimitClosedError";
  constructor() {
    super("the scheduler is stopping");
  }
}
