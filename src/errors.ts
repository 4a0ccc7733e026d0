// The one error vocabulary below the server edge. store/, secrets/, runtime/,
// backup/ and service/ throw a DomainError (or a subclass) when a caller
// should hear why a call failed; the server edge alone turns its kind into a
// Connect code and an HTTP status. Anything else that escapes is an internal
// failure and reaches callers as "internal error", its detail only in the log.
//
// The kinds are the names of the canonical error model (google.rpc.Code) that
// API callers already see in `code`: a vocabulary of its own would be a third
// one to translate, and these already say what a caller can do about it
// (retry, fix the request, call Ensure first).

export const ERROR_KINDS = [
  "invalid_argument",
  "not_found",
  "already_exists",
  "failed_precondition",
  /** A value past the range the system holds (a point-in-time restore's target outside the recovery window). */
  "out_of_range",
  "resource_exhausted",
  "unavailable",
  "deadline_exceeded",
  "data_loss",
  "internal",
  "unimplemented",
] as const;

export type ErrorKind = (typeof ERROR_KINDS)[number];

export interface DomainErrorOptions {
  readonly cause?: unknown;
  /** When a retry can succeed (a rate limit): sent as Retry-After. */
  readonly retryAfterSeconds?: number;
}

/**
 * A failure whose message is safe to show to the caller: written by us from
 * known shapes, never holding a password, a DATABASE_URL, a path of the host
 * or raw output of a tool. The cause, if any, is for the log only.
 */
export class DomainError extends Error {
  override readonly name: string = "DomainError";
  readonly retryAfterSeconds: number | undefined;

  constructor(
    readonly kind: ErrorKind,
    message: string,
    options: DomainErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** The kind of a failure that is wrapped with more context: its own when it has one, else internal. */
export function kindOf(error: unknown): ErrorKind {
  return error instanceof DomainError ? error.kind : "internal";
}
