// What PostgreSQL and PgBouncer have in common as the service's children: a
// supervised process, and a wait for them to answer that gives up early when
// the child has already died. Readiness is polled directly with short
// intervals: pg_ctl -w and similar sleep in coarse steps that would dominate
// the time to a new database.
import { RuntimeError } from "../../runtime.js";
import { pollUntil } from "../../shared/settle.js";
import { SupervisedProcess, type SupervisedProcessOptions } from "./supervised-process.js";

const POLL_MS = 5;

export interface ChildIdentity {
  /** "PostgreSQL" or "PgBouncer". */
  readonly title: string;
  /** Whose it is in messages: a slug, or "the template cluster". */
  readonly owner: string;
  /** Where to look when it fails; named in every error. */
  readonly logFile: string;
}

export abstract class ChildServer {
  readonly process: SupervisedProcess;

  protected constructor(
    options: Omit<SupervisedProcessOptions, "prepare">,
    protected identity: ChildIdentity,
  ) {
    this.process = new SupervisedProcess({ ...options, prepare: () => this.prepare() });
  }

  get running(): boolean {
    return this.process.running;
  }

  start(): Promise<void> {
    return this.process.start();
  }

  stop(): Promise<void> {
    return this.process.stop();
  }

  /** Runs before every start and restart. */
  protected abstract prepare(): Promise<void>;

  /**
   * Retries `attempt` until it succeeds, the deadline passes (RuntimeError
   * "timeout": `{title} for {owner} {failure} in time`) or the signal aborts.
   * While the process is not yet supervised its exit ends the wait at once (a
   * start failure); a supervised one may be between a crash and its restart.
   */
  protected async waitUntil<T>(attempt: () => Promise<T>, failure: string, deadline: number, signal: AbortSignal): Promise<T> {
    const { title, owner, logFile } = this.identity;
    let lastError: unknown;
    const answered = await pollUntil({
      attempt: async () => {
        if (!this.process.running && !this.process.supervising) {
          throw new RuntimeError("failed", `${title} for ${owner} exited while starting; see ${logFile}`);
        }
        try {
          return { value: await attempt() };
        } catch (error) {
          lastError = error;
          return undefined;
        }
      },
      deadline,
      signal,
      intervalMs: () => POLL_MS,
      timedOut: () => new RuntimeError("timeout", `${title} for ${owner} ${failure} in time (${describe(lastError)}); see ${logFile}`),
    });
    return answered.value;
  }
}

/** A driver error's code and message: safe, since neither ever holds a password. */
function describe(error: unknown): string {
  if (error && typeof error === "object" && "code" in error && typeof error.code === "string") {
    const message = error instanceof Error ? `: ${error.message}` : "";
    return `${error.code}${message}`;
  }
  return error instanceof Error ? error.message : "no answer";
}
