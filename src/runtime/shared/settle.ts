// Waiting for something to come up (a server to answer, a container to
// accept connections), bounded by a deadline and ended early by an abort.
// Both drivers poll rather than sleep in the coarse steps of pg_ctl -w and the
// like: what they wait for usually arrives within a few hundred milliseconds.
import { setTimeout as sleep } from "node:timers/promises";

/** Waits `ms`; when `signal` aborts, throws its reason (not a generic AbortError). */
export async function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  await sleep(ms, undefined, signal ? { signal } : {}).catch(() => undefined);
  signal?.throwIfAborted();
}

export interface Poll<T> {
  /** The value once it is there; undefined to try again. May throw to end the wait at once. */
  readonly attempt: () => Promise<T | undefined>;
  /** Epoch ms after which the last failed attempt ends the wait. */
  readonly deadline: number;
  readonly signal: AbortSignal | undefined;
  /** The pause after failed attempt number `round` (from 0). */
  readonly intervalMs: (round: number) => number;
  /** The error the wait ends with once the deadline has passed. */
  readonly timedOut: () => Error | Promise<Error>;
}

/** Tries until `attempt` gives a value, the deadline passes or the signal aborts (with its reason). */
export async function pollUntil<T>(poll: Poll<T>): Promise<T> {
  for (let round = 0; ; round++) {
    poll.signal?.throwIfAborted();
    const value = await poll.attempt();
    if (value !== undefined) return value;
    if (Date.now() >= poll.deadline) throw await poll.timedOut();
    await pause(poll.intervalMs(round), poll.signal);
  }
}
