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
  "authorization",
  "*.authorization",
  "headers.authorization",
  "req.headers.authorization",
];

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
