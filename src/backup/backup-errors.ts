// What a failed backup, restore or verification says about itself. The text
// is stored on the backup record and returned to API callers, so it is built
// from known shapes only: a RuntimeError's message (safe by the Runtime
// contract), a file system error code, or a generic line. Raw output of
// pg_dump or psql, paths and anything else that could carry a secret stays in
// the service log.
import { RuntimeError } from "../runtime/runtime.js";

const FILE_SYSTEM_REASONS: Record<string, string> = {
  ENOSPC: "disk full: no space left in the backup directory",
  EDQUOT: "disk quota exceeded in the backup directory",
  EROFS: "the backup directory is on a read-only file system",
  EACCES: "permission denied in the backup directory",
  EPERM: "permission denied in the backup directory",
  EIO: "I/O error in the backup directory",
  EMFILE: "too many open files",
  ENFILE: "too many open files",
};

export function failureReason(error: unknown): string {
  if (error instanceof RuntimeError) return error.message;
  if (error instanceof BackupError) return error.message;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === "string") {
    if (code in FILE_SYSTEM_REASONS) return FILE_SYSTEM_REASONS[code]!;
    if (code === "ABORT_ERR") return "cancelled: the service is shutting down";
    if (/^E[A-Z]+$/.test(code)) return `file system error ${code} in the backup directory`;
  }
  return "the backup process failed; see the service log";
}

/** A failure whose message we wrote ourselves and which is therefore safe to show. */
export class BackupError extends Error {
  override readonly name: string = "BackupError";
}
