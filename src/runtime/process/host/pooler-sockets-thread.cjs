// The thread that holds the poolers' listening sockets (see pooler-sockets.ts).
// It never returns to its event loop: libuv accepts connections on every
// listening socket its loop polls, and each one accepted here would be taken
// from PgBouncer. So it only ever blocks in Atomics.wait and serves one
// request at a time, synchronously. Plain CommonJS: it must load without the
// TypeScript loader the service runs under.
"use strict";
const net = require("node:net");
const { workerData } = require("node:worker_threads");

// Shared with pooler-sockets.ts: [state, operation, port, result].
const IDLE = 0;
const REQUEST = 1;
const DONE = 2;
const HOLD = 1;
const ENOSYS = -38;

const control = new Int32Array(workerData.control);
/** port → the handle, kept open (and never listened on by a loop) until released. */
const held = new Map();

/** The listening socket's fd, or a negative errno (UV_EADDRINUSE when another process has the port). */
function hold(port) {
  // Bind and listen without a net.Server: its loop would start accepting.
  if (typeof net._createServerHandle !== "function") return ENOSYS;
  const handle = net._createServerHandle(workerData.host, port, 4);
  if (typeof handle === "number") return handle;
  const error = handle.listen(workerData.backlog);
  if (error) {
    handle.close();
    return error;
  }
  held.set(port, handle);
  return handle.fd;
}

function release(port) {
  const handle = held.get(port);
  held.delete(port);
  // Closes the descriptor at once; the callback that would follow never runs, as nothing here runs the loop.
  handle?.close();
  return 0;
}

for (;;) {
  Atomics.wait(control, 0, IDLE);
  if (Atomics.load(control, 0) !== REQUEST) continue;
  const port = control[2];
  control[3] = control[1] === HOLD ? hold(port) : release(port);
  Atomics.store(control, 0, DONE);
  Atomics.notify(control, 0);
  Atomics.wait(control, 0, DONE);
}
