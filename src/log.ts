// Structured JSON logs (pino). Secrets must never be passed to a logger; the
// redaction below is a second line of defence for fields that might carry one.
import { pino, type Logger, type DestinationStream } from "pino";

export type { Logger };

const REDACTED_PATHS = [
  "password",
  "*.password",
  "token",
  "*.token",
  "databaseUrl",
  "*.databaseUrl",
  "database_url",
  "*.database_url",
  "sessionUrl",
  "*.sessionUrl",
  "session_url",
  "*.session_url",
  "authorization",
  "*.authorization",
  "secretAccessKey",
  "*.secretAccessKey",
  "headers.authorization",
  "req.headers.authorization",
];

/**
 * What may be logged of an error: its name, message and errno code, never its
 * cause chain or raw fields (a library error can carry a request or output).
 */
export function loggableError(error: unknown): { name: string; message: string; code?: string } {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { name: error.name, message: error.message, ...(typeof code === "string" ? { code } : {}) };
  }
  return { name: "Error", message: String(error) };
}

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: "sota-db" },
      redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination,
  );
}
