// GET /v1/projects/{id}/database/backups/{backup_id}/download: the backup's
// .sql.gz, streamed from disk (backpressure from the client reaches the file
// read, so a slow client costs no memory). A plain HTTP route rather than an
// RPC: a multi-gigabyte file does not belong in a message. It follows the
// same rules as the RPCs: bearer token, the same authorization (project
// tokens only for their own project), the same {code, message} JSON errors.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { pipeline } from "node:stream/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import type { BackupDownload } from "../backup/backups.js";
import { loggableError, type Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import { authenticate, authorize } from "./authorization.js";
import { codeName, errorJson, httpStatus, publicError } from "./error-codes.js";
import type { ExtraRoute } from "./http-server.js";
import type { TokenRegistry } from "./tokens.js";

/** Exported for the OpenAPI test, which checks the route is documented. */
export const DOWNLOAD_PATH = /^\/v1\/projects\/([^/]+)\/database\/backups\/([^/]+)\/download$/;
const METHOD = "DownloadBackup";

export interface BackupDownloadRouteOptions {
  readonly tokens: TokenRegistry;
  /** The DatabaseService: it checks the project and hands over to the Backups port. */
  readonly service: { downloadBackup(projectId: string, backupId: string): Promise<BackupDownload> };
  readonly logger: Logger;
  readonly metrics?: Metrics;
}

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

export function backupDownloadRoute(options: BackupDownloadRouteOptions): ExtraRoute {
  return async (req, res, url) => {
    const match = DOWNLOAD_PATH.exec(url.pathname);
    if (!match) return false;
    const started = performance.now();
    let code = "ok";
    try {
      if (req.method !== "GET" && req.method !== "HEAD") {
        throw Object.assign(new ConnectError(`${req.method} is not allowed on ${url.pathname}`, Code.Unimplemented), { httpStatus: 405 });
      }
      await serve(options, req, res, segment(match[1]!), segment(match[2]!));
    } catch (error) {
      const problem = publicError(error) ?? internal(options.logger, error);
      code = codeName(problem.code);
      if (res.headersSent) {
        // Mid-body: the only honest signal left is a cut connection (the length will not match).
        options.logger.error({ method: METHOD, err: loggableError(error) }, "backup download interrupted");
        res.destroy();
      } else {
        sendError(res, problem, (error as { httpStatus?: number }).httpStatus);
      }
    } finally {
      options.metrics?.observeRequest(METHOD, code, started);
    }
    return true;
  };
}

async function serve(options: BackupDownloadRouteOptions, req: Request, res: Response, projectId: string, backupId: string): Promise<void> {
  const principal = authenticate(options.tokens, req.headers.authorization);
  authorize(principal, METHOD, projectId);
  // The service rejects a malformed backup id before any lookup.
  const download = await options.service.downloadBackup(projectId, backupId);
  const sha256 = Buffer.from(download.sha256, "hex").toString("base64");
  res.writeHead(200, {
    "content-type": "application/gzip",
    "content-length": String(download.sizeBytes),
    "content-disposition": `attachment; filename="${download.record.slug}-${download.record.id}.sql.gz"`,
    "x-checksum-sha256": download.sha256,
    digest: `sha-256=${sha256}`,
    "repr-digest": `sha-256=:${sha256}:`,
    etag: `"${download.sha256}"`,
    "cache-control": "private, no-store",
    "x-content-type-options": "nosniff",
  });
  const stream = download.stream();
  if (req.method === "HEAD") {
    stream.destroy();
    res.end();
    return;
  }
  await pipeline(stream, res);
}

function sendError(res: Response, error: ConnectError, status = httpStatus(error.code)): void {
  const body = errorJson(error);
  const headers: Record<string, string> = { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) };
  if (error.code === Code.Unauthenticated) headers["www-authenticate"] = "Bearer";
  res.writeHead(status, headers);
  res.end(body);
}

function internal(logger: Logger, error: unknown): ConnectError {
  logger.error({ method: METHOD, err: loggableError(error) }, "unexpected error");
  return new ConnectError("internal error", Code.Internal);
}

function segment(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}
