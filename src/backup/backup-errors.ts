// What a failed backup, restore or verification says about itself. The text
// is stored on the backup record and returned to API callers, so it is built
// from known shapes only: a DomainError's message (a RuntimeError's is safe by
// the Runtime contract), a file system error code, or a generic line. Raw
// output of pg_dump or psql, paths and anything else that could carry a secret
// stays in the service log.
import { DomainError, type ErrorKind } from "../errors.js";

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
  if (error instanceof DomainError) return error.message;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === "string") {
    if (code in FILE_SYSTEM_REASONS) return FILE_SYSTEM_REASONS[code]!;
    if (code === "ABORT_ERR") return "cancelled: the service is shutting down";
    if (/^E[A-Z]+$/.test(code)) return `file system error ${code} in the backup directory`;
  }
  return "the backup process failed; see the service log";
}

/** A step of a backup or restore that failed in a way we describe ourselves; internal unless said otherwise. */
export class BackupError extends DomainError {
  override readonly name: string = "BackupError";
  constructor(message: string, kind: ErrorKind = "internal") {
    super(kind, message);
  }
}

// Refusals before any work starts: RESOURCE_EXHAUSTED (HTTP 429), the code
// gRPC names for a per-user quota and for a file system out of space alike.
// Retrying later can succeed; nothing was recorded or written.

/** The project token has used its manual backups (restores included) for the window. */
export function manualBackupLimitReached(count: number, windowMs: number, waitMs: number): DomainError {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  return new DomainError(
    "resource_exhausted",
    `this project has started ${count} manual backups in the last ${duration(windowMs)} (each restore counts: it takes a safety backup); ` +
      `try again in ${seconds} s`,
    // The server edge sends it as Retry-After: REST clients get the standard header with their 429.
    { retryAfterSeconds: seconds },
  );
}

/** A file system would drop below its reserve. Says nothing of sizes or paths: those are the host's, and go to the log. */
export function notEnoughDiskSpace(action: "backup" | "verification" | "restore" | "clone"): DomainError {
  return new DomainError(
    "resource_exhausted",
    `not enough free disk space to start this ${action}: the service keeps a reserve free for every project; ` +
      "try again once older backups have expired or an operator has freed space",
  );
}

/** Every verification/restore slot of the service is taken. */
export function loadSlotsBusy(): DomainError {
  return new DomainError(
    "resource_exhausted",
    "the service is already running as many backup verifications and restores as it allows; try again in a moment",
  );
}

/** This project already has a verification or restore running: one at a time, so no project takes every slot. */
export function projectLoadBusy(): DomainError {
  return new DomainError("resource_exhausted", "a verification or restore of this project is already running; try again once it has finished");
}

function duration(ms: number): string {
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000]] as const) {
    if (ms % size === 0) return `${ms / size} ${unit}`;
  }
  return `${Math.round(ms / 1000)} s`;
}
