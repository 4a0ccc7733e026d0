// Bounds on every phase of an API connection, so that a client that connects
// and then never finishes talking holds nothing for long: the first bytes
// (protocol sniffing), the TLS handshake, the request head, the request body,
// the idle time between requests, and how many connections exist at once.
// Node's HTTP servers enforce most of it once told; the rest (sniffing, idle
// HTTP/2 sessions, an HTTP/2 request body that never ends) is here.
import type * as http from "node:http";
import * as http2 from "node:http2";
import type * as net from "node:net";

export interface ConnectionLimits {
  /** Connections open at once; more are closed as they arrive. */
  readonly maxConnections: number;
  /** Time a new connection has to send a complete request head. */
  readonly headerTimeoutMs: number;
  /** Time a connection with no request in flight stays open. */
  readonly idleTimeoutMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = { maxConnections: 256, headerTimeoutMs: 10_000, idleTimeoutMs: 30_000 };

/**
 * Time for a whole request, body included, to arrive: request bodies here are
 * at most 1 MiB. Not the time to answer it (Ensure may take a minute).
 */
const REQUEST_TIMEOUT_MS = 30_000;
/** How often Node's HTTP/1 server checks the header and request deadlines (its default, 30 s, would stretch them). */
const CHECK_INTERVAL_MS = 1_000;
/** Concurrent streams per HTTP/2 session (Node's default is 2^32-1). */
const MAX_CONCURRENT_STREAMS = 100;
/** After GOAWAY, how long a session that still has streams may finish them. */
const CLOSE_GRACE_MS = 1_000;

export function requestTimeoutMs(limits: ConnectionLimits): number {
  return Math.max(REQUEST_TIMEOUT_MS, limits.headerTimeoutMs);
}

/** The HTTP/2 settings a session offers: a bounded number of streams. */
export const HTTP2_SETTINGS: http2.Settings = { maxConcurrentStreams: MAX_CONCURRENT_STREAMS };

/**
 * HTTP/1 deadlines (head, whole request, keep-alive) on a server, also on the
 * secure HTTP/2 server's HTTP/1 fallback. `fedByHand`: the server gets its
 * connections by emit("connection") and never listens itself; Node starts
 * checking these deadlines on "listening", so that event is given to it.
 */
export function boundHttp1(server: http.Server | http2.Http2SecureServer, limits: ConnectionLimits, fedByHand: boolean): void {
  // Node reads connectionsCheckingInterval when it starts checking; its types list it only as an option.
  const target = server as http.Server & { connectionsCheckingInterval: number };
  target.headersTimeout = limits.headerTimeoutMs;
  target.requestTimeout = requestTimeoutMs(limits);
  target.keepAliveTimeout = limits.idleTimeoutMs;
  target.connectionsCheckingInterval = CHECK_INTERVAL_MS;
  if (fedByHand) target.emit("listening");
}

/**
 * HTTP/2: a session with no stream open is closed after the header timeout
 * (before its first request) or the idle timeout (between requests); a
 * stream whose request body has not ended in time is cancelled.
 */
export function boundHttp2Sessions(server: http2.Http2Server | http2.Http2SecureServer, limits: ConnectionLimits): void {
  server.on("session", (session: http2.ServerHttp2Session) => boundSession(session, limits));
  server.on("stream", (stream: http2.ServerHttp2Stream) => boundRequestBody(stream, requestTimeoutMs(limits)));
}

function boundSession(session: http2.ServerHttp2Session, limits: ConnectionLimits): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = (ms: number): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (session.destroyed) return;
      session.close();
      setTimeout(() => session.destroy(), CLOSE_GRACE_MS).unref();
    }, ms);
    timer.unref();
  };
  arm(limits.headerTimeoutMs);
  session.on("stream", (stream: http2.ServerHttp2Stream) => {
    open += 1;
    clearTimeout(timer);
    stream.once("close", () => {
      open -= 1;
      if (open === 0 && !session.closed && !session.destroyed) arm(limits.idleTimeoutMs);
    });
  });
  session.once("close", () => clearTimeout(timer));
}

function boundRequestBody(stream: http2.ServerHttp2Stream, ms: number): void {
  const timer = setTimeout(() => {
    // remoteClose: the client has sent END_STREAM, i.e. the whole request.
    if (!stream.destroyed && !stream.closed && !stream.state.remoteClose) stream.close(http2.constants.NGHTTP2_CANCEL);
  }, ms);
  timer.unref();
  stream.once("close", () => clearTimeout(timer));
}

/**
 * The first bytes of a cleartext connection, before it is known to be HTTP/1
 * or HTTP/2, must come within the header timeout.
 */
export function sniffDeadline(socket: net.Socket, limits: ConnectionLimits): () => void {
  const timer = setTimeout(() => socket.destroy(), limits.headerTimeoutMs);
  timer.unref();
  return () => clearTimeout(timer);
}
