// Error codes as they appear outside: snake_case names ("not_found") and the
// HTTP status the Connect protocol gives each, so REST routes that answer
// without reaching an RPC handler (bad JSON, oversized body, unknown path)
// look exactly like those that do.
import { Code, ConnectError } from "@connectrpc/connect";

const HTTP_STATUS: Record<Code, number> = {
  [Code.Canceled]: 499,
  [Code.Unknown]: 500,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 400,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
  [Code.Unauthenticated]: 401,
};

export function codeName(code: Code): string {
  // Code[Code.NotFound] is "NotFound"; Connect JSON and Prometheus labels use snake_case.
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

export function httpStatus(code: Code): number {
  return HTTP_STATUS[code];
}

export function errorJson(error: ConnectError): string {
  return JSON.stringify({ code: codeName(error.code), message: error.rawMessage });
}
