// A caller refused before its body was read (no token, or a token that may
// not make the call) is answered on HTTP/1.1 with "connection: close". If the
// body it already sent were still unread in the kernel's buffer when the
// socket closes, the kernel would answer with a reset, and the client, still
// writing, sees EPIPE or ECONNRESET instead of the refusal. So up to a small,
// bounded amount of what has arrived is read and thrown away first: a real
// client's request has usually arrived whole by then; a body that keeps coming
// (or never comes) costs at most DISCARD_LIMIT bytes and DISCARD_WAIT_MS.
import type { IncomingMessage } from "node:http";

export const DISCARD_LIMIT = 64 * 1024;
export const DISCARD_WAIT_MS = 250;

/** Reads and drops `req`'s body until it ends, DISCARD_LIMIT bytes pass or DISCARD_WAIT_MS elapse. */
export function discardBody(req: IncomingMessage, limit = DISCARD_LIMIT, waitMs = DISCARD_WAIT_MS): Promise<void> {
  if (req.readableEnded || req.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let seen = 0;
    const done = (): void => {
      clearTimeout(timer);
      req.off("data", onData);
      req.off("end", done);
      req.off("error", done);
      req.off("close", done);
      // Whatever else comes is not read: the connection closes after the refusal.
      if (!req.readableEnded) req.pause();
      resolve();
    };
    const onData = (chunk: Buffer): void => {
      seen += chunk.length;
      if (seen > limit) done();
    };
    const timer = setTimeout(done, waitMs);
    req.on("data", onData);
    req.once("end", done);
    req.once("error", done);
    req.once("close", done);
  });
}
