// A runtime's close(), as both drivers show it to callers: from the moment it
// is called every new call fails with the same RuntimeError "unavailable", and
// work in flight sees an aborted signal whose reason says why.
import { RuntimeError } from "../runtime.js";

export class RuntimeClosing {
  private readonly controller = new AbortController();

  /** `kind`: "process" or "docker", for the messages. */
  constructor(private readonly kind: string) {}

  /** Aborted once close() has been called. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get closed(): boolean {
    return this.controller.signal.aborted;
  }

  /** Called first thing by close(); later calls change nothing. */
  begin(): void {
    if (!this.closed) this.controller.abort(new RuntimeError("unavailable", `the ${this.kind} runtime is shutting down`));
  }

  assertOpen(): void {
    if (this.closed) throw new RuntimeError("unavailable", `the ${this.kind} runtime has been closed`);
  }
}
