// The product spec's REST paths, mapped onto the same Connect handlers (and therefore
// the same interceptors: auth, errors, metrics) as gRPC and Connect. Each
// route only turns path, query and body into the RPC's JSON request; the
// answer is the RPC's Connect JSON, errors included ({code, message} with the
// matching HTTP status).
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { DatabaseService } from "../../gen/sota/database/v1/database_pb.js";
import { authenticate, authorize } from "./authorization.js";
import { codeName, errorJson, httpStatus } from "./error-codes.js";
import type { Metrics } from "../metrics.js";
import type { TokenRegistry } from "./tokens.js";
import { discardBody } from "./discard-body.js";

export const MAX_REST_BODY_BYTES = 64 * 1024;

type RestMethod = "GET" | "POST" | "DELETE" | "PATCH";

export interface RestRoute {
  readonly method: RestMethod;
  readonly pattern: RegExp;
  /** The DatabaseService method name, e.g. "Ensure". */
  readonly rpc: string;
  /** The RPC request, from path parameters, query and body. */
  readonly request: (params: string[], query: URLSearchParams, body: JsonObject) => JsonObject;
}

const PROJECT = "/v1/projects/([^/]+)/database";

/** Exported for the OpenAPI test, which checks every route is documented. */
export const REST_ROUTES: readonly RestRoute[] = [
  {
    method: "POST",
    pattern: new RegExp(`^${PROJECT}$`),
    rpc: "Ensure",
    request: ([projectId], _query, body) => ({ ...body, projectId: projectId! }),
  },
  {
    method: "GET",
    pattern: new RegExp(`^${PROJECT}$`),
    rpc: "GetDatabase",
    request: ([projectId]) => ({ projectId: projectId! }),
  },
  {
    method: "DELETE",
    pattern: new RegExp(`^${PROJECT}$`),
    rpc: "DeleteDatabase",
    request: ([projectId], query, body) => ({
      ...body,
      ...(query.has("skip_final_backup") ? { skipFinalBackup: query.get("skip_final_backup") !== "false" && query.get("skip_final_backup") !== "0" } : {}),
      projectId: projectId!,
    }),
  },
  {
    // The one REST path that returns a password: a caller that rotates must
    // learn the new URL, and GetConnection has no REST path.
    method: "POST",
    pattern: new RegExp(`^${PROJECT}/credentials/rotate$`),
    rpc: "RotateCredentials",
    request: ([projectId], _query, body) => ({ ...body, projectId: projectId! }),
  },
  {
    method: "PATCH",
    pattern: new RegExp(`^${PROJECT}$`),
    rpc: "UpdateDatabase",
    request: ([projectId], _query, body) => ({ ...body, projectId: projectId! }),
  },
  {
    method: "GET",
    pattern: new RegExp(`^${PROJECT}/backups$`),
    rpc: "ListBackups",
    request: ([projectId]) => ({ projectId: projectId! }),
  },
  {
    method: "POST",
    pattern: new RegExp(`^${PROJECT}/backups$`),
    rpc: "CreateBackup",
    request: ([projectId], query, body) => ({
      ...body,
      ...(query.has("wait") ? { wait: query.get("wait") !== "false" && query.get("wait") !== "0" } : {}),
      projectId: projectId!,
    }),
  },
  {
    method: "POST",
    pattern: new RegExp(`^${PROJECT}/backups/([^/]+)/restore$`),
    rpc: "RestoreBackup",
    // The body carries targetTime (a point-in-time restore; backup id "-" lets the service pick the base backup).
    request: ([projectId, backupId], _query, body) => ({ ...body, projectId: projectId!, backupId: backupId! }),
  },
  {
    method: "POST",
    pattern: new RegExp(`^${PROJECT}/backups/([^/]+)/verify$`),
    rpc: "VerifyBackup",
    request: ([projectId, backupId]) => ({ projectId: projectId!, backupId: backupId! }),
  },
  {
    method: "POST",
    pattern: new RegExp(`^${PROJECT}/clone$`),
    rpc: "CloneDatabase",
    request: ([projectId], _query, body) => ({ ...body, projectId: projectId! }),
  },
];

export interface RestMatch {
  readonly route?: RestRoute;
  readonly params: string[];
  /** The path exists but not for this HTTP method. */
  readonly methodNotAllowed: boolean;
}

export function matchRest(method: string, pathname: string): RestMatch | undefined {
  let pathMatched = false;
  for (const route of REST_ROUTES) {
    const match = route.pattern.exec(pathname);
    if (!match) continue;
    pathMatched = true;
    if (route.method === method) {
      return { route, params: match.slice(1).map(decodeSegment), methodNotAllowed: false };
    }
  }
  return pathMatched ? { params: [], methodNotAllowed: true } : undefined;
}

export class RestGateway {
  private readonly handlers: ReadonlyMap<string, UniversalHandler>;

  constructor(
    handlers: readonly UniversalHandler[],
    private readonly tokens: TokenRegistry,
    private readonly metrics?: Metrics,
  ) {
    this.handlers = new Map(
      handlers.filter((handler) => handler.service.typeName === DatabaseService.typeName).map((handler) => [handler.method.name, handler]),
    );
  }

  async handle(
    match: RestMatch & { route: RestRoute },
    req: IncomingMessage | Http2ServerRequest,
    url: URL,
    signal: AbortSignal,
  ): Promise<UniversalServerResponse> {
    const handler = this.handlers.get(match.route.rpc);
    if (!handler) return errorResponse(new ConnectError(`${match.route.rpc} is not served`, Code.Unimplemented));
    // The token and the project come in the head: a caller who may not make
    // this call is answered before a byte of its body is read (the RPC's own
    // interceptor checks again, on the request it then gets).
    const started = performance.now();
    try {
      authorize(authenticate(this.tokens, req.headers.authorization), match.route.rpc, match.params[0] ?? "");
    } catch (error) {
      const refusal = ConnectError.from(error);
      // The RPC's interceptors never see this call: count it here.
      this.metrics?.observeRequest(match.route.rpc, codeName(refusal.code), started);
      if (req.httpVersion.startsWith("1.")) await discardBody(req as IncomingMessage);
      return refusedBeforeBody(refusal, req.httpVersion);
    }
    let body: JsonObject;
    try {
      body = await readJsonObject(req);
    } catch (error) {
      const problem = ConnectError.from(error);
      return errorResponse(problem, problem.code === Code.ResourceExhausted ? 413 : httpStatus(problem.code));
    }
    const header = new Headers({ "content-type": "application/json", "connect-protocol-version": "1" });
    const authorization = req.headers.authorization;
    if (authorization) header.set("authorization", authorization);
    return handler({
      httpVersion: req.httpVersion,
      url: `${url.origin}${handler.requestPath}`,
      method: "POST",
      header,
      body: match.route.request(match.params, url.searchParams, body) as JsonValue,
      signal,
    });
  }
}

/** Reads a JSON object body (empty means {}), bounded in size. */
async function readJsonObject(req: IncomingMessage | Http2ServerRequest): Promise<JsonObject> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    // Keep reading a moderately oversized body so the client sees our 413
    // rather than a reset; give up on anything absurd.
    if (size > MAX_REST_BODY_BYTES * 16) throw tooLarge();
    if (size <= MAX_REST_BODY_BYTES) chunks.push(chunk);
  }
  if (size > MAX_REST_BODY_BYTES) throw tooLarge();
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (text === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConnectError("request body is not valid JSON", Code.InvalidArgument);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConnectError("request body must be a JSON object", Code.InvalidArgument);
  }
  return parsed as JsonObject;
}

function tooLarge(): ConnectError {
  return new ConnectError(`request body is larger than ${MAX_REST_BODY_BYTES} bytes`, Code.ResourceExhausted);
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/**
 * A refusal sent while the request body may still be arriving. HTTP/1.1 closes
 * the connection after it (else Node would read the unwanted body to reuse
 * it); an HTTP/2 stream the client never ends is cancelled after the request
 * timeout (connection-limits.ts), the session itself stays usable.
 */
function refusedBeforeBody(error: ConnectError, httpVersion: string): UniversalServerResponse {
  const response = errorResponse(error);
  if (error.code === Code.Unauthenticated) response.header?.set("www-authenticate", "Bearer");
  if (httpVersion.startsWith("1.")) response.header?.set("connection", "close");
  return response;
}

/** An error answer in the Connect JSON shape; `status` overrides the code's usual one (413 for a large body). */
export function errorResponse(error: ConnectError, status = httpStatus(error.code)): UniversalServerResponse {
  const bytes = new TextEncoder().encode(errorJson(error));
  return {
    status,
    header: new Headers({ "content-type": "application/json" }),
    body: (async function* () {
      yield bytes;
    })(),
  };
}
