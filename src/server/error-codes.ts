// The server edge of the error vocabulary: a DomainError's kind becomes the
// Connect code of the same name, and a code becomes its snake_case name and
// HTTP status through Connect's own protocol helpers, so REST routes that
// answer without reaching an RPC handler (bad JSON, oversized body, unknown
// path, the backup download) look exactly like those that do. Connect marks
// these helpers internal to its protocol; package.json pins the exact
// version, and test/unit/error-codes.test.ts holds the statuses the README
// documents.
import { Code, ConnectError } from "@connectrpc/connect";
import { codeFromString, codeToHttpStatus, codeToString, errorToJson } from "@connectrpc/connect/protocol-connect";
import { DomainError } from "../errors.js";

/** codeName(Code.NotFound) is "not_found": the name in Connect JSON, Prometheus labels and the README. */
export { codeToString as codeName, codeToHttpStatus as httpStatus };

export function errorJson(error: ConnectError): string {
  return JSON.stringify(errorToJson(error, undefined));
}

/** A domain failure as the RPC layer sends it: the code named like its kind, its safe message, Retry-After where it has one. */
export function toConnectError(error: DomainError): ConnectError {
  const metadata = error.retryAfterSeconds === undefined ? undefined : { "retry-after": String(error.retryAfterSeconds) };
  return new ConnectError(error.message, codeFromString(error.kind) ?? Code.Internal, metadata);
}

/**
 * What a caller may see of a failure: a ConnectError (raised at the edge) or
 * a DomainError as it is; anything else is undefined, for the caller to log
 * and answer "internal error" (its message could hold a path, a query or worse).
 */
export function publicError(error: unknown): ConnectError | undefined {
  if (error instanceof ConnectError) return error;
  if (error instanceof DomainError) return toConnectError(error);
  return undefined;
}
