// The OpenAPI 3.1 document of the REST paths, the backup download and the
// plain HTTP routes. Operations are listed here by hand (path, roles, words);
// every body schema comes from the proto descriptors (proto-json-schema.ts)
// and every error status from Connect's own code → status mapping, so
// neither can drift. openapi/openapi.json is this document, written by
// `npm run openapi`; the e2e test checks the two are equal, that every route
// the server has is documented, and calls every documented operation.
import type { DescMessage } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import * as pb from "../../../gen/sota/database/v1/database_pb.js";
import { codeName, httpStatus } from "../error-codes.js";
import { componentName, enumSchema, messageSchema, reachable, type JsonSchema } from "./proto-json-schema.js";

const PROJECT = "/v1/projects/{projectId}/database";
const ADMIN_DEPLOYER = "Tokens: admin and deployer; a project token is refused (permission_denied).";
const ANY_FOR_PROJECT = "Tokens: admin and deployer for any project, a project token for its own project only.";

const DOWNLOAD = `${PROJECT}/backups/{backupId}/download`;
const DOWNLOAD_HEADERS = {
  "X-Checksum-SHA256": { description: "SHA-256 of the file, hex.", schema: { type: "string", pattern: "^[0-9a-f]{64}$" } },
  "Content-Length": { description: "The file's size in bytes.", schema: { type: "integer" } },
};

interface Operation {
  readonly method: "get" | "post" | "patch" | "delete" | "head";
  readonly path: string;
  readonly operationId: string;
  readonly summary: string;
  readonly description: string;
  /** Needs a bearer token; false for the probes and this document. */
  readonly secured: boolean;
  readonly query?: ReadonlyArray<{ name: string; description: string }>;
  /** The RPC request whose remaining fields are the body; path and query fields are left out. */
  readonly request?: { message: DescMessage; omit: readonly string[] };
  readonly response: Record<string, unknown>;
  /** /readyz answers 503 with its report rather than an error. */
  readonly notReady?: Record<string, unknown>;
}

const json = (message: DescMessage, description: string) => ({
  description,
  content: { "application/json": { schema: { $ref: `#/components/schemas/${componentName(message)}` } } },
});

const OPERATIONS: readonly Operation[] = [
  {
    method: "post",
    path: PROJECT,
    operationId: "Ensure",
    summary: "Create the project's database, or return it if it exists",
    description: `Idempotent: a second call returns the same database with created=false. ${ANY_FOR_PROJECT}`,
    secured: true,
    request: { message: pb.EnsureRequestSchema, omit: ["project_id"] },
    response: json(pb.EnsureResponseSchema, "The database, and whether this call created it."),
  },
  {
    method: "get",
    path: PROJECT,
    operationId: "GetDatabase",
    summary: "The project's database, with live figures",
    description: `No password here. ${ANY_FOR_PROJECT}`,
    secured: true,
    response: json(pb.GetDatabaseResponseSchema, "The database, its pooler settings and usage."),
  },
  {
    method: "delete",
    path: PROJECT,
    operationId: "DeleteDatabase",
    summary: "Delete the project's database (a final backup first, unless skipped)",
    description: ADMIN_DEPLOYER,
    secured: true,
    query: [{ name: "skip_final_backup", description: "true skips the final backup (also accepted as skipFinalBackup in the body)." }],
    request: { message: pb.DeleteDatabaseRequestSchema, omit: ["project_id"] },
    response: json(pb.DeleteDatabaseResponseSchema, "The database as deleted."),
  },
  {
    method: "patch",
    path: PROJECT,
    operationId: "UpdateDatabase",
    summary: "Change the project's resource limits override, applied in place where the runtime can",
    description: `A project token may not raise its own limits. ${ADMIN_DEPLOYER}`,
    secured: true,
    request: { message: pb.UpdateDatabaseRequestSchema, omit: ["project_id"] },
    response: json(pb.UpdateDatabaseResponseSchema, "The database with the limits in effect."),
  },
  {
    method: "post",
    path: `${PROJECT}/credentials/rotate`,
    operationId: "RotateCredentials",
    summary: "Give the database a new password; returns the new DATABASE_URL",
    description: `The one REST path that returns a password. ${ADMIN_DEPLOYER}`,
    secured: true,
    request: { message: pb.RotateCredentialsRequestSchema, omit: ["project_id"] },
    response: json(pb.RotateCredentialsResponseSchema, "The new URL and the database."),
  },
  {
    method: "get",
    path: `${PROJECT}/backups`,
    operationId: "ListBackups",
    summary: "The project's backups, newest first",
    description: ANY_FOR_PROJECT,
    secured: true,
    response: json(pb.ListBackupsResponseSchema, "The backups."),
  },
  {
    method: "post",
    path: `${PROJECT}/backups`,
    operationId: "CreateBackup",
    summary: "Start a backup (or return the one running); ?wait=true answers when it is done",
    description: ANY_FOR_PROJECT,
    secured: true,
    query: [{ name: "wait", description: "true answers once the backup has finished (also accepted as wait in the body)." }],
    request: { message: pb.CreateBackupRequestSchema, omit: ["project_id"] },
    response: json(pb.CreateBackupResponseSchema, "The backup."),
  },
  {
    method: "post",
    path: `${PROJECT}/backups/{backupId}/restore`,
    operationId: "RestoreBackup",
    summary: "Restore the database from a dump, or with targetTime to a point in time (a safety backup is taken first)",
    description:
      "Without a body: the dump {backupId}, as it is. With {\"targetTime\": \"2026-11-30T14:05:00Z\"}: the database as it was at that second, " +
      "from the base backup {backupId} or, with backupId \"-\", the newest that reaches it; a time outside the recovery window " +
      `(GetDatabase, ListBackups) is refused with out_of_range naming the earliest and latest times. ${ANY_FOR_PROJECT}`,
    secured: true,
    request: { message: pb.RestoreBackupRequestSchema, omit: ["project_id", "backup_id"] },
    response: json(pb.RestoreBackupResponseSchema, "The restore's result."),
  },
  {
    method: "post",
    path: `${PROJECT}/backups/{backupId}/verify`,
    operationId: "VerifyBackup",
    summary: "Restore a backup into a scratch database and check it",
    description: ANY_FOR_PROJECT,
    secured: true,
    response: json(pb.VerifyBackupResponseSchema, "The backup with its verification result."),
  },
  {
    method: "post",
    path: `${PROJECT}/clone`,
    operationId: "CloneDatabase",
    summary: "Make the project's database from another project's data, as of now or a past second",
    description:
      "The project must have no database (or a deleted one); the source's database is only read, and targetTime must be within its recovery window " +
      `(absent: now). The new database has its own slug, role, password and DATABASE_URL. ${ADMIN_DEPLOYER}`,
    secured: true,
    request: { message: pb.CloneDatabaseRequestSchema, omit: ["project_id"] },
    response: json(pb.CloneDatabaseResponseSchema, "The new database."),
  },
  {
    method: "get",
    path: DOWNLOAD,
    operationId: "DownloadBackup",
    summary: "The backup's .sql.gz file, streamed",
    description: `Dumps only: a base backup is refused (failed_precondition). Checksums in X-Checksum-SHA256 (hex), Repr-Digest and ETag. ${ANY_FOR_PROJECT}`,
    secured: true,
    response: {
      description: "The gzip-compressed SQL dump.",
      headers: DOWNLOAD_HEADERS,
      content: { "application/gzip": { schema: { type: "string", contentMediaType: "application/gzip" } } },
    },
  },
  {
    method: "head",
    path: DOWNLOAD,
    operationId: "DownloadBackupHead",
    summary: "The download's headers (size, checksums) without the file",
    description: ANY_FOR_PROJECT,
    secured: true,
    response: { description: "The headers a download would have.", headers: DOWNLOAD_HEADERS },
  },
  {
    method: "get",
    path: "/healthz",
    operationId: "Healthz",
    summary: "Liveness: the process answers",
    description: "No token.",
    secured: false,
    response: {
      description: "Alive.",
      content: { "application/json": { schema: { type: "object", required: ["status"], properties: { status: { const: "ok" } } } } },
    },
  },
  {
    method: "get",
    path: "/readyz",
    operationId: "Readyz",
    summary: "Readiness: the store and the runtime answer (503 when not)",
    description: "No token.",
    secured: false,
    response: { description: "Ready.", content: { "application/json": { schema: { $ref: "#/components/schemas/Readiness" } } } },
    notReady: { description: "Not ready: the report says which check failed.", content: { "application/json": { schema: { $ref: "#/components/schemas/Readiness" } } } },
  },
  {
    method: "get",
    path: "/metrics",
    operationId: "Metrics",
    summary: "Prometheus metrics",
    description: "Tokens: admin or metrics (project ids are in the labels).",
    secured: true,
    response: { description: "Prometheus text exposition.", content: { "text/plain": { schema: { type: "string" } } } },
  },
  {
    method: "get",
    path: "/openapi.json",
    operationId: "OpenApi",
    summary: "This document",
    description: "No token: the API surface is public, what it guards is the data behind it.",
    secured: false,
    response: { description: "The OpenAPI 3.1 document.", content: { "application/json": { schema: { type: "object" } } } },
  },
];

/** Every Connect code by HTTP status: the error responses are Connect's mapping (error-codes.ts), not a second copy of it. */
function errorStatuses(): Map<number, string[]> {
  const byStatus = new Map<number, string[]>();
  for (const code of Object.values(Code).filter((value): value is Code => typeof value === "number")) {
    const status = httpStatus(code);
    byStatus.set(status, [...(byStatus.get(status) ?? []), codeName(code)]);
  }
  return new Map([...byStatus.entries()].sort(([a], [b]) => a - b));
}

const PARAMS: Record<string, JsonSchema> = {
  projectId: {
    name: "projectId",
    in: "path",
    required: true,
    description: "The project's id, a UUID.",
    schema: { type: "string", format: "uuid" },
  },
  backupId: {
    name: "backupId",
    in: "path",
    required: true,
    description: 'A backup id as ListBackups returns it; for a point-in-time restore, "-" lets the service pick the base backup.',
    schema: { type: "string", pattern: "^(\\d{8}t\\d{9}z-[0-9a-f]{12}|-)$" },
  },
};

function operationObject(op: Operation, statuses: Map<number, string[]>): JsonSchema {
  const pathParams = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => ({ $ref: `#/components/parameters/${m[1]}` }));
  const query = (op.query ?? []).map((q) => ({ name: q.name, in: "query", required: false, description: q.description, schema: { type: "boolean" } }));
  const errors: Record<string, unknown> = {};
  const wanted = op.path.startsWith("/v1/") ? [...statuses.keys(), 405, ...(op.request ? [413] : [])] : op.secured ? [401, 403, 500] : [];
  for (const status of [...new Set(wanted)].sort((a, b) => a - b)) {
    if (status !== 200) errors[String(status)] = { $ref: `#/components/responses/Error${status}` };
  }
  if (op.notReady) errors["503"] = op.notReady;
  return {
    operationId: op.operationId,
    summary: op.summary,
    description: op.description,
    security: op.secured ? [{ bearer: [] }] : [],
    ...(pathParams.length + query.length > 0 ? { parameters: [...pathParams, ...query] } : {}),
    ...(op.request
      ? {
          requestBody: {
            required: false,
            description: "Optional: an empty body is {}.",
            content: { "application/json": { schema: { $ref: `#/components/schemas/${op.operationId}Body` } } },
          },
        }
      : {}),
    responses: { "200": op.response, ...errors },
  };
}

/** package.json's version; the e2e test checks they agree. */
export const API_VERSION = "0.1.0";

export function openApiDocument(): JsonSchema {
  const statuses = errorStatuses();
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of OPERATIONS) (paths[op.path] ??= {})[op.method] = operationObject(op, statuses);
  const responseMessages = [pb.EnsureResponseSchema, pb.GetDatabaseResponseSchema, pb.DeleteDatabaseResponseSchema, pb.RotateCredentialsResponseSchema, pb.UpdateDatabaseResponseSchema, pb.ListBackupsResponseSchema, pb.CreateBackupResponseSchema, pb.RestoreBackupResponseSchema, pb.VerifyBackupResponseSchema, pb.CloneDatabaseResponseSchema];
  const schemas: Record<string, JsonSchema> = {};
  for (const desc of reachable(responseMessages)) schemas[componentName(desc)] = desc.kind === "enum" ? enumSchema(desc) : messageSchema(desc, { response: true });
  for (const op of OPERATIONS) if (op.request) schemas[`${op.operationId}Body`] = messageSchema(op.request.message, { omit: op.request.omit, response: false });
  schemas.Error = {
    type: "object",
    description: "Connect's error JSON: the code's snake_case name and a safe message.",
    required: ["code"],
    properties: {
      code: { type: "string", enum: [...statuses.values()].flat().filter((name) => name !== "ok").sort() },
      message: { type: "string" },
      details: { type: "array" },
    },
  };
  schemas.Readiness = {
    type: "object",
    required: ["status", "checks"],
    properties: {
      status: { enum: ["ready", "not ready"] },
      checks: {
        type: "object",
        additionalProperties: { type: "object", required: ["ok"], properties: { ok: { type: "boolean" }, error: { type: "string" } } },
      },
    },
  };
  const responses: Record<string, unknown> = {};
  const errorBody = { "application/json": { schema: { $ref: "#/components/schemas/Error" } } };
  const retryAfter = { "Retry-After": { description: "Seconds to wait before trying again, where the server knows.", schema: { type: "integer" } } };
  for (const [status, names] of statuses) {
    if (status === 200) continue;
    responses[`Error${status}`] = {
      description: `Error codes: ${names.join(", ")}.`,
      ...(status === 429 || status === 503 ? { headers: retryAfter } : {}),
      content: errorBody,
    };
  }
  responses.Error405 = { description: "The path exists, not for this method (code unimplemented).", content: errorBody };
  responses.Error413 = { description: "The body is larger than 64 KiB (code resource_exhausted).", content: errorBody };
  return {
    openapi: "3.1.0",
    info: {
      title: "sota-db",
      version: API_VERSION,
      description:
        "REST paths of the DatabaseService (the same handlers serve gRPC and Connect on this port). Bodies are the RPC messages' proto JSON, every implicit field present. Errors are {code, message} with Connect's HTTP status for the code.",
    },
    servers: [{ url: "http://127.0.0.1:8080" }],
    security: [],
    paths,
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "A token from the tokens file; its role decides what it may call." } },
      parameters: PARAMS,
      schemas,
      responses,
    },
  };
}

/** The documented operations, for the test that checks the route tables against them. */
export const DOCUMENTED = OPERATIONS.map((op) => ({ method: op.method.toUpperCase(), path: op.path, operationId: op.operationId }));
