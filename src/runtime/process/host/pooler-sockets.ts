// The poolers' listening sockets, bound and held by the service itself for as
// long as a database is open, and handed to each PgBouncer it starts
// (socket activation, see pgbouncer-server.ts). While the service runs, a
// project's port is never free: not while its PgBouncer restarts, not while it
// is down, so no other local process can bind it and collect the passwords
// apps send there.
//
// Node cannot hold a listening socket without accepting on it: a net.Server's
// loop accepts every connection. So the sockets live in a thread of their own
// that never runs its loop (pooler-sockets-thread.cjs); this side asks it
// synchronously, each request being a couple of system calls.
import { getSystemErrorName } from "node:util";
import { Worker } from "node:worker_threads";
import { RuntimeError } from "../../runtime.js";

const HOST = "127.0.0.1";
/** PgBouncer's own listen_backlog default; it never calls listen() again on a socket it is given. */
const LISTEN_BACKLOG = 128;
/** The first request also waits for the thread to start. */
const ANSWER_TIMEOUT_MS = 10_000;

// Shared with the thread: [state, operation, port, result].
const IDLE = 0;
const REQUEST = 1;
const HOLD = 1;
const RELEASE = 2;

/** Holding the port failed; `code` is the errno name, EADDRINUSE when another process has it. */
export class PortHoldError extends Error {
  override readonly name = "PortHoldError";
  constructor(
    readonly port: number,
    readonly code: string,
  ) {
    super(`cannot listen on ${HOST}:${port}: ${code}`);
  }
}

export class PoolerSockets {
  private readonly control = new Int32Array(new SharedArrayBuffer(4 * Int32Array.BYTES_PER_ELEMENT));
  private readonly worker: Worker;
  /** port → fd of the listening socket. */
  private readonly held = new Map<number, number>();
  private broken: Error | undefined;

  constructor() {
    this.worker = new Worker(new URL("./pooler-sockets-thread.cjs", import.meta.url), {
      workerData: { control: this.control.buffer, host: HOST, backlog: LISTEN_BACKLOG },
      // Plain CommonJS: no loader, no inherited flags.
      execArgv: [],
    });
    this.worker.unref();
    this.worker.on("error", (error) => {
      this.broken = error;
    });
  }

  /**
   * The descriptor of a socket listening on 127.0.0.1:`port`, bound now or
   * earlier. Throws PortHoldError when the port cannot be had.
   */
  hold(port: number): number {
    const known = this.held.get(port);
    if (known !== undefined) return known;
    const result = this.ask(HOLD, port);
    if (result < 0) throw new PortHoldError(port, errnoName(result));
    this.held.set(port, result);
    return result;
  }

  /** Lets the port go (a database removed or moved, the runtime closing). */
  release(port: number): void {
    if (!this.held.delete(port)) return;
    this.ask(RELEASE, port);
  }

  async close(): Promise<void> {
    for (const port of [...this.held.keys()]) this.release(port);
    await this.worker.terminate();
  }

  private ask(operation: number, port: number): number {
    if (this.broken) throw new RuntimeError("failed", `the thread holding the pooler sockets has failed: ${this.broken.message}`);
    const control = this.control;
    control[1] = operation;
    control[2] = port;
    Atomics.store(control, 0, REQUEST);
    Atomics.notify(control, 0);
    // Blocks the service for the time of a bind and a listen (the first time, of the thread's start).
    if (Atomics.wait(control, 0, REQUEST, ANSWER_TIMEOUT_MS) === "timed-out") {
      this.broken = new Error(`no answer within ${ANSWER_TIMEOUT_MS} ms`);
      throw new RuntimeError("failed", `the thread holding the pooler sockets did not answer within ${ANSWER_TIMEOUT_MS} ms`);
    }
    const result = control[3]!;
    Atomics.store(control, 0, IDLE);
    Atomics.notify(control, 0);
    return result;
  }
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(errno);
  } catch {
    return `errno ${errno}`;
  }
}
