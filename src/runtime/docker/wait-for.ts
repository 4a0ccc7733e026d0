// Polling until something inside a container comes up, bounded by the ensure's
// deadline. The first rounds are short: what is waited for usually arrives
// within a few hundred milliseconds, and each round already costs an exec.
import { setTimeout as sleep } from "node:timers/promises";
import { RuntimeError } from "../runtime.js";
import type { DockerEngine } from "./docker-engine.js";

export interface Wait<T> {
  readonly deadline: number;
  /** For the timeout's message: the bound the deadline came from. */
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
  /** What did not come up, for the timeout's message. */
  readonly what: string;
  /** The container whose state the timeout's message reports. */
  readonly containerName: string;
  /** A value once it is up, undefined to try again. */
  readonly attempt: () => Promise<T | undefined>;
  readonly lastProblem?: () => string;
}

/** Engine failures end the wait at once; the deadline ends it with a "timeout". */
export async function waitFor<T>(engine: DockerEngine, wait: Wait<T>): Promise<T> {
  for (let round = 0; ; round++) {
    wait.signal?.throwIfAborted();
    const value = await wait.attempt();
    if (value !== undefined) return value;
    if (Date.now() >= wait.deadline) {
      const name = wait.containerName;
      const info = await engine.inspectContainer(name).catch(() => undefined);
      const state = info
        ? `${name} is ${info.State.Status}${info.State.Running ? "" : ` (exit code ${info.State.ExitCode})`}`
        : `${name} is missing`;
      throw new RuntimeError(
        "timeout",
        `${wait.what} did not succeed within ${Math.round(wait.timeoutMs / 1000)}s; ${state}${wait.lastProblem?.() ?? ""}`,
      );
    }
    await sleep(Math.min(20 * 2 ** round, 500), undefined, wait.signal ? { signal: wait.signal } : {});
  }
}
