// Turns what dockerode throws into RuntimeErrors whose messages are safe to
// show: engine connection failures become "unavailable", the rest "failed".
import { RuntimeError } from "../runtime.js";

const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ENOENT",
  "EACCES",
  "EPERM",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

interface EngineErrorShape {
  readonly statusCode?: number;
  readonly code?: string;
  readonly json?: { readonly message?: string } | null;
  readonly reason?: string;
  readonly message?: string;
}

function shape(error: unknown): EngineErrorShape {
  return typeof error === "object" && error !== null ? (error as EngineErrorShape) : {};
}

export function statusCodeOf(error: unknown): number | undefined {
  return shape(error).statusCode;
}

export function isNotFound(error: unknown): boolean {
  return statusCodeOf(error) === 404;
}

export function isConflict(error: unknown): boolean {
  return statusCodeOf(error) === 409;
}

export function isConnectionError(error: unknown): boolean {
  const code = shape(error).code;
  return code !== undefined && CONNECTION_CODES.has(code) && statusCodeOf(error) === undefined;
}

/** The engine's own message ("No such container: x"), without dockerode's prefix. */
export function engineMessage(error: unknown): string {
  const err = shape(error);
  const message = err.json?.message ?? err.reason ?? err.message ?? String(error);
  return redactSecrets(message.trim());
}

/** Removes anything shaped like a credential from text that came from outside. */
export function redactSecrets(text: string): string {
  return text
    .replace(/SCRAM-SHA-256\$[^\s'"]+/g, "SCRAM-SHA-256$[redacted]")
    .replace(/\b(PGPASSWORD|POSTGRES_PASSWORD)=\S+/g, "$1=[redacted]")
    .replace(/(postgres(?:ql)?:\/\/[^:/@\s]+:)[^@\s]+@/g, "$1[redacted]@");
}

/**
 * `what` says what the driver was doing ("creating container sota-db-x").
 * `endpoint` names the engine for connection failures.
 */
export function toRuntimeError(error: unknown, what: string, endpoint: string): RuntimeError {
  if (error instanceof RuntimeError) return error;
  if (isConnectionError(error)) {
    return new RuntimeError(
      "unavailable",
      `Docker engine unreachable at ${endpoint} (${shape(error).code}) while ${what}`,
      { cause: error },
    );
  }
  const status = statusCodeOf(error);
  return new RuntimeError("failed", `${what} failed${status ? ` (HTTP ${status})` : ""}: ${engineMessage(error)}`, {
    cause: error,
  });
}
