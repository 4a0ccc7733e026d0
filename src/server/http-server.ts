// One listening port for everything: gRPC (HTTP/2), gRPC-Web and Connect
// (HTTP/1.1 or HTTP/2), the REST paths, health and metrics.
//
// Cleartext: Node 20's http2 server with allowHTTP1 does not accept HTTP/1.1,
// so each connection is routed by its first bytes: the HTTP/2 client preface
// starts with "PRI * HTTP/2.0", which no HTTP/1 request line does.
// TLS: ALPN chooses, and Node's secure http2 server with allowHTTP1 serves both.
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { Code, ConnectError, createConnectRouter, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { loggableError, type Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import { authenticate, authorizeMetrics, isPublicService } from "./authorization.js";
import { boundHttp1, boundHttp2Sessions, DEFAULT_CONNECTION_LIMITS, HTTP2_SETTINGS, sniffDeadline, type ConnectionLimits } from "./connection-limits.js";
import { errorJson, httpStatus } from "./error-codes.js";
import type { Readiness } from "./readiness.js";
import { openApiDocument } from "./openapi/openapi-document.js";
import { matchRest, RestGateway, errorResponse } from "./rest-gateway.js";
import { discardBody } from "./discard-body.js";
import { tokenBeforeBody } from "./token-before-body.js";
import type { TokenRegistry } from "./tokens.js";

/** The plain GET routes this server answers itself (the OpenAPI test checks each is documented). */
export const PLAIN_ROUTES = ["/healthz", "/readyz", "/metrics", "/openapi.json"] as const;

const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0");
/** Largest RPC message accepted; requests here are a few fields. */
const READ_MAX_BYTES = 1024 * 1024;

export interface ApiServerOptions {
  readonly routes: ReadonlyArray<(router: ConnectRouter) => void>;
  readonly interceptors: Interceptor[];
  readonly readiness: Readiness;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Who may call: REST routes check the token before reading a body, /metrics needs one. */
  readonly tokens: TokenRegistry;
  /** Connection cap and timeouts; defaults in connection-limits.ts. */
  readonly limits?: ConnectionLimits;
  /** Extra plain-HTTP routes (e.g. backup download); return false when not handled. */
  readonly extraRoutes?: ExtraRoute;
  /** PEM certificate chain and key: serve TLS (h2 and http/1.1 by ALPN) instead of cleartext. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer };
}

export type ExtraRoute = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
  url: URL,
) => Promise<boolean>;

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

export class ApiServer {
  private readonly rpc: ReadonlyMap<string, UniversalHandler>;
  private readonly rest: RestGateway;
  private readonly h1: http.Server;
  private readonly h2: http2.Http2Server;
  private readonly listener: net.Server | http2.Http2SecureServer;
  private readonly sockets = new Set<net.Socket>();
  private readonly shutdown = new AbortController();
  private readonly limits: ConnectionLimits;

  constructor(private readonly options: ApiServerOptions) {
    const router = createConnectRouter({
      interceptors: options.interceptors,
      readMaxBytes: READ_MAX_BYTES,
      // curl users read JSON: show false, 0 and "" rather than omitting them.
      jsonOptions: { alwaysEmitImplicit: true },
      acceptCompression: [compressionGzip, compressionBrotli],
      shutdownSignal: this.shutdown.signal,
    });
    for (const routes of options.routes) routes(router);
    this.rpc = new Map(router.handlers.map((handler) => [handler.requestPath, handler]));
    this.rest = new RestGateway(router.handlers, options.tokens, options.metrics);
    const limits = (this.limits = options.limits ?? DEFAULT_CONNECTION_LIMITS);

    const onRequest = (req: NodeRequest, res: NodeResponse): void => {
      this.dispatch(req, res).catch((error: unknown) => {
        options.logger.error({ err: loggableError(error) }, "request failed");
        if (!res.headersSent) sendJson(res, 500, errorJson(new ConnectError("internal error", Code.Internal)));
        else res.destroy?.();
      });
    };
    this.h1 = http.createServer(onRequest);
    boundHttp1(this.h1, limits, true);
    this.h2 = http2.createServer({ settings: HTTP2_SETTINGS }, onRequest);
    boundHttp2Sessions(this.h2, limits);
    this.listener = options.tls
      ? http2.createSecureServer(
          { cert: options.tls.cert, key: options.tls.key, allowHTTP1: true, settings: HTTP2_SETTINGS, handshakeTimeout: limits.headerTimeoutMs },
          onRequest,
        )
      : // Small responses go out at once: Nagle's algorithm would hold a
        // response's last frame back until the client acknowledged the first.
        net.createServer({ noDelay: true }, (socket) => this.route(socket));
    // Node closes connections beyond this as they are accepted.
    this.listener.maxConnections = limits.maxConnections;
    if (options.tls) {
      const secure = this.listener as http2.Http2SecureServer;
      boundHttp1(secure, limits, false);
      boundHttp2Sessions(secure, limits);
      this.listener.on("connection", (socket: net.Socket) => {
        this.sockets.add(socket);
        socket.once("close", () => this.sockets.delete(socket));
      });
    }
  }

  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.listener.once("error", reject);
      this.listener.listen(port, host, () => {
        this.listener.off("error", reject);
        resolve();
      });
    });
    const address = this.listener.address() as net.AddressInfo;
    return { host: address.address, port: address.port };
  }

  /** Stops accepting, lets calls in flight finish for up to graceMs, then cuts the rest. */
  async close(graceMs = 5_000): Promise<void> {
    this.shutdown.abort(new ConnectError("server is shutting down", Code.Unavailable));
    const closed = Promise.all([
      new Promise<void>((resolve) => this.listener.close(() => resolve())),
      new Promise<void>((resolve) => this.h1.close(() => resolve())),
      new Promise<void>((resolve) => this.h2.close(() => resolve())),
    ]);
    this.h1.closeIdleConnections();
    const timer = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, graceMs);
    await closed;
    clearTimeout(timer);
  }

  private route(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    const sniffed = sniffDeadline(socket, this.limits);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const decided = head.length >= HTTP2_PREFACE.length || !HTTP2_PREFACE.subarray(0, head.length).equals(head);
      if (!decided) return;
      // From here on the chosen server's own deadlines apply.
      sniffed();
      socket.off("data", onData);
      socket.pause();
      socket.unshift(head);
      if (head.subarray(0, HTTP2_PREFACE.length).equals(HTTP2_PREFACE)) {
        // The http2 session reads the socket's native handle and takes what
        // is already buffered (the unshifted preface) when it is set up;
        // resuming here would let that data flow past it.
        this.h2.emit("connection", socket);
      } else {
        this.h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  }

  private async dispatch(req: NodeRequest, res: NodeResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://localhost");
    const rpc = this.rpc.get(url.pathname);
    if (rpc) {
      let uReq = universalRequestFromNodeRequest(req, res, undefined, undefined);
      if (!isPublicService(rpc.service.typeName)) {
        const started = performance.now();
        uReq = tokenBeforeBody(uReq, this.options.tokens, async () => {
          // The interceptors never see this call: count it here.
          this.options.metrics.observeRequest(rpc.method.name, "unauthenticated", started);
          // HTTP/1.1: close after the refusal, else Node would read the unwanted body to reuse the connection.
          if (req.httpVersionMajor === 1 && !res.headersSent) {
            res.setHeader("connection", "close");
            await discardBody(req as http.IncomingMessage);
          }
        });
      }
      await universalResponseToNodeResponse(await rpc(uReq), res);
      return;
    }
    const rest = matchRest(req.method ?? "GET", url.pathname);
    if (rest?.route) {
      const signal = abortOnClose(res);
      await universalResponseToNodeResponse(await this.rest.handle({ ...rest, route: rest.route }, req, url, signal), res);
      return;
    }
    if (rest?.methodNotAllowed) {
      await send(res, errorResponse(new ConnectError(`${req.method} is not allowed on ${url.pathname}`, Code.Unimplemented), 405));
      return;
    }
    if (await this.options.extraRoutes?.(req, res, url)) return;
    if (req.method === "GET" && url.pathname === "/openapi.json") {
      // No token: the API surface is public (it is in the repository); the data behind it is not.
      sendJson(res, 200, (openApiJson ??= JSON.stringify(openApiDocument())));
      return;
    }
    if (req.method === "GET" && url.pathname === "/healthz") {
      sendJson(res, 200, JSON.stringify({ status: "ok" }));
      return;
    }
    if (req.method === "GET" && url.pathname === "/readyz") {
      const report = await this.options.readiness();
      sendJson(res, report.ready ? 200 : 503, JSON.stringify({ status: report.ready ? "ready" : "not ready", checks: report.checks }));
      return;
    }
    if (req.method === "GET" && url.pathname === "/metrics") {
      // Project ids are in the labels: only the operator's scraper and admins read them.
      try {
        authorizeMetrics(authenticate(this.options.tokens, req.headers.authorization));
      } catch (error) {
        sendError(res, ConnectError.from(error));
        return;
      }
      const body = await this.options.metrics.registry.metrics();
      res.writeHead(200, { "content-type": this.options.metrics.registry.contentType });
      res.end(body);
      return;
    }
    const notFound = new ConnectError(`no route for ${req.method} ${url.pathname}`, Code.NotFound);
    sendJson(res, httpStatus(Code.NotFound), errorJson(notFound));
  }
}

let openApiJson: string | undefined;

function sendJson(res: NodeResponse, status: number, body: string): void {
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function sendError(res: NodeResponse, error: ConnectError): void {
  if (error.code === Code.Unauthenticated) res.setHeader("www-authenticate", "Bearer");
  sendJson(res, httpStatus(error.code), errorJson(error));
}

async function send(res: NodeResponse, response: UniversalServerResponse): Promise<void> {
  await universalResponseToNodeResponse(response, res);
}

function abortOnClose(res: NodeResponse): AbortSignal {
  const controller = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) controller.abort();
  });
  return controller.signal;
}
