// What the warm pool and the spare copies share: made one at a time in the
// background until there are enough, with a growing pause after a failure so
// that a broken host (full disk, missing binaries) never becomes a busy loop;
// and taken ones that could not be used removed in the background.
import { loggableError, type Logger } from "../../../log.js";
import { pause } from "../../shared/settle.js";

const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 60_000;
const DONE_POLL_MS = 25;

export interface RefillOptions {
  /** Ends the loop (between two items). */
  readonly signal: AbortSignal;
  /** Whether one more is wanted. */
  readonly wanted: () => boolean;
  /** Makes one; a failure is logged and retried after a pause. */
  readonly makeOne: () => Promise<void>;
  readonly logger: Logger;
  /** For the warning: "warm pool: starting a warm instance failed". */
  readonly failure: string;
}

export class RefillLoop {
  private running: Promise<void> | undefined;
  private failures = 0;
  /** Removals running in the background; settled() waits for them. */
  private readonly chores = new Set<Promise<void>>();

  constructor(private readonly options: RefillOptions) {}

  /** Starts the loop in the background; cheap when it runs already or nothing is wanted. */
  start(): void {
    if (this.running || this.options.signal.aborted || !this.options.wanted()) return;
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  /** Resolves once nothing more is wanted (for callers that need the reserve full). */
  async whenDone(signal: AbortSignal = this.options.signal): Promise<void> {
    while (this.options.wanted()) await pause(DONE_POLL_MS, signal);
  }

  /** Runs a removal in the background; a failure is logged as `failure`, with `context`. */
  discard(removal: Promise<void>, context: Readonly<Record<string, unknown>>, failure: string): void {
    const chore = removal
      .catch((error: unknown) => this.options.logger.warn({ ...context, err: loggableError(error) }, failure))
      .finally(() => this.chores.delete(chore));
    this.chores.add(chore);
  }

  /** Resolves once the loop in progress, if any, and the removals have ended. */
  async settled(): Promise<void> {
    await this.running;
    await Promise.all(this.chores);
  }

  private async loop(): Promise<void> {
    const { signal, wanted, makeOne, logger, failure } = this.options;
    while (!signal.aborted && wanted()) {
      try {
        await makeOne();
        this.failures = 0;
      } catch (error) {
        if (signal.aborted) return;
        const retryInMs = Math.min(FIRST_RETRY_MS * 2 ** this.failures, MAX_RETRY_MS);
        this.failures += 1;
        logger.warn({ err: loggableError(error), retryInMs }, failure);
        await pause(retryInMs, signal).catch(() => undefined);
      }
    }
  }
}
