// Who may call what. Used by the RPC interceptor and by the REST download
// route, so every path to the data follows the same rules.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Principal, TokenRegistry } from "./tokens.js";

/**
 * Services open to anyone who can reach the port: probes must not need a
 * token, and reflection tells only what the published proto contract says
 * (no project, no figure, no secret), while grpcurl, grpcui and Postman ask
 * it before the user has set any header.
 */
const PUBLIC_SERVICES = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

export function isPublicService(typeName: string): boolean {
  return PUBLIC_SERVICES.has(typeName);
}

/** Methods that return a secret; project tokens never may call them. */
const SECRET_METHODS = new Set(["GetConnection"]);
/** Methods that change what a project may use (its limits); project tokens never may call them. */
const OPERATOR_METHODS = new Set(["UpdateDatabase"]);

/**
 * Methods that end or change a database's life for the platform; project
 * tokens never may call them: a leaked app token must not delete the
 * database (with the final backup skipped), lock the app out by rotating, or
 * copy another project's data by cloning it (the token's project check covers
 * project_id, not source_project_id).
 */
const PLATFORM_METHODS = new Set(["DeleteDatabase", "RotateCredentials", "CloneDatabase"]);

export function authenticate(tokens: TokenRegistry, authorization: string | null | undefined): Principal {
  if (!authorization) throw new ConnectError("missing bearer token: send Authorization: Bearer <token>", Code.Unauthenticated);
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match) throw new ConnectError("malformed Authorization header: expected Bearer <token>", Code.Unauthenticated);
  const principal = tokens.lookup(match[1]!);
  if (!principal) throw new ConnectError("unknown bearer token", Code.Unauthenticated);
  return principal;
}

/** Throws PermissionDenied unless the principal may call `method` for `projectId`. */
export function authorize(principal: Principal, method: string, projectId: string): void {
  if (principal.role === "admin" || principal.role === "deployer") return;
  if (principal.role === "metrics") {
    throw new ConnectError(`token "${principal.name}" may only read /metrics`, Code.PermissionDenied);
  }
  if (SECRET_METHODS.has(method)) {
    throw new ConnectError(`token "${principal.name}" may not call ${method}: it returns secrets`, Code.PermissionDenied);
  }
  if (PLATFORM_METHODS.has(method)) {
    throw new ConnectError(`token "${principal.name}" may not call ${method}: only admin and deployer tokens may`, Code.PermissionDenied);
  }
  if (OPERATOR_METHODS.has(method)) {
    throw new ConnectError(`token "${principal.name}" may not call ${method}: a project's limits are set by the operator`, Code.PermissionDenied);
  }
  if (principal.projectId !== projectId.trim().toLowerCase()) {
    throw new ConnectError(`token "${principal.name}" is not allowed for this project`, Code.PermissionDenied);
  }
}

/**
 * /metrics names every project in its labels: the operator's scraper (a
 * metrics token) and admins may read it, a project token may not.
 */
export function authorizeMetrics(principal: Principal): void {
  if (principal.role === "admin" || principal.role === "metrics") return;
  throw new ConnectError(`token "${principal.name}" may not read /metrics: use an admin token or a token with role "metrics"`, Code.PermissionDenied);
}
