// Polling until something inside a container comes up, bounded by the ensure's
// deadline. The first rounds are short: what is waited for usually arrives
// within a few hundred milliseconds, and each round already costs an exec.
import { RuntimeError } from "../runtime.js";
import { pollUntil } from "../shared/settle.js";
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
export function waitFor<T>(engine: DockerEngine, wait: Wait<T>): Promise<T> {
  return pollUntil({
    attempt: wait.attempt,
    deadline: wait.deadline,
    signal: wait.signal,
    intervalMs: (round) => Math.min(20 * 2 ** round, 500),
    timedOut: async () => {
      const name = wait.containerName;
      const info = await engine.inspectContainer(name).catch(() => undefined);
      const state = info
        ? `${name} is ${info.State.Status}${info.State.Running ? "" : ` (exit code ${info.State.ExitCode})`}`
        : `${name} is missing`;
      return new RuntimeError(
        "timeout",
        `${wait.what} did not succeed within ${Math.round(wait.timeoutMs / 1000)}s; ${state}${wait.lastProblem?.() ?? ""}`,
      );
    },
  });
}
