// What of a command's stderr goes into an error message: one line, redacted,
// bounded, since messages reach logs and API callers.
import { redactSecrets } from "./docker-errors.js";

/** psql's first ERROR line (psql then prints the statement, which is not needed). */
export function firstError(stderr: string): string {
  const lines = stderr.split("\n").map((line) => line.trim()).filter(Boolean);
  const line = lines.find((candidate) => /\b(ERROR|FATAL):/.test(candidate)) ?? lines.at(-1);
  return line ? `: ${redactSecrets(line).slice(0, 300)}` : "";
}

export function lastLine(stderr: string): string {
  const line = stderr.trim().split("\n").at(-1)?.trim();
  return line ? `: ${redactSecrets(line).slice(0, 300)}` : "";
}
