// Restore = load the backup into a new database beside the live one, then
// swap the two by renaming while PgBouncer holds the clients.
//
// Why a swap rather than drop-and-recreate: the live database keeps serving
// during the load, which is the slow part; a backup that fails to load (or
// turns out corrupt half way) leaves the live database exactly as it was; and
// the pause the app sees is two renames long, not the whole load. The swap is
// one transaction, so there is no moment with no database under the name.
// Role, password and pooler entry stay as they are: the same DATABASE_URL
// works before and after.
//
// Order: checksum (refuse a changed file before doing anything), load into
// the new database, safety backup of the live one, pause, swap, resume, drop
// the replaced database (its content is in the safety backup).
import { setTimeout as sleep } from "node:timers/promises";
import { DomainError, kindOf } from "../errors.js";
import { loggableError, type Logger } from "../log.js";
import type { Runtime, RuntimeTarget } from "../runtime/runtime.js";
import type { BackupRecord } from "../store/records.js";
import { failureReason } from "./backup-errors.js";
import { fileChecksum } from "./backup-file.js";
import { ChecksumMismatchError, loadBackupFile } from "./backup-loader.js";
import { clearPaused, notePaused } from "./pause-marker.js";
import { withPausedDatabase, terminateSessions } from "./pooler-pause.js";
import { createScratchLike, dropDatabase, dropLeftoverScratch, scratchName } from "./scratch-database.js";
import { quoteIdent } from "./sql-text.js";

export interface RestoreContext {
  readonly runtime: Runtime;
  /** Where the pause is noted while it lasts (see pause-marker.ts). */
  readonly backupDir: string;
  readonly logger: Logger;
  /** Scratch databases in use by this process; leftovers of a crash are the others. */
  readonly scratchInUse: Set<string>;
  readonly pauseGraceMs: number;
  readonly pauseTimeoutMs: number;
  /** Takes the safety backup of the current state; resolves with its finished record. */
  readonly takeSafetyBackup: () => Promise<BackupRecord>;
}

const SWAP_ATTEMPTS = 20;

/** `record` is a succeeded backup of `target`; `path` its file. */
export async function restoreFromBackup(
  context: RestoreContext,
  target: RuntimeTarget,
  record: BackupRecord,
  path: string,
): Promise<{ restored: BackupRecord; safety: BackupRecord }> {
  const { runtime, logger } = context;
  const log = { projectId: target.projectId, slug: target.slug, backupId: record.id };
  await assertChecksum(path, record);

  const incoming = scratchName("restore");
  const outgoing = scratchName("old");
  context.scratchInUse.add(incoming).add(outgoing);
  try {
    await dropLeftoverScratch(runtime, target, context.scratchInUse).catch((error: unknown) =>
      logger.warn({ ...log, err: loggableError(error) }, "could not drop leftover scratch databases"),
    );
    await loadIntoNewDatabase(context, target, record, path, incoming);

    // Taken after the (long) load and right before the pause: writes the app
    // makes in between are in neither database, so that window is kept short.
    const safety = await context.takeSafetyBackup();
    if (safety.state !== "succeeded") {
      throw new DomainError(
        "failed_precondition",
        `restore refused: the safety backup of the current state failed (${safety.error ?? "unknown reason"}); the database was not changed`,
      );
    }

    const marker = await notePaused(context.backupDir, target);
    await withPausedDatabase(runtime, target, { graceMs: context.pauseGraceMs, timeoutMs: context.pauseTimeoutMs, logger }, () =>
      swap(runtime, target, incoming, outgoing),
    )
      .catch((error: unknown) => {
        logger.error({ ...log, err: loggableError(error) }, "restore: swapping in the restored database failed");
        throw new DomainError(kindOf(error), `restore failed while swapping databases (${failureReason(error)}); the database was not changed`);
      })
      .finally(() => clearPaused(marker));
    logger.info({ ...log, safetyBackupId: safety.id }, "database restored from backup");
    // The replaced database is not needed: the safety backup holds its content.
    await dropDatabase(runtime, target, outgoing).catch((error: unknown) =>
      logger.warn({ ...log, err: loggableError(error) }, "could not drop the replaced database; it is dropped on the next restore"),
    );
    return { restored: record, safety };
  } finally {
    await dropDatabase(runtime, target, incoming).catch(() => undefined);
    context.scratchInUse.delete(incoming);
    context.scratchInUse.delete(outgoing);
  }
}

/** Refuses a file whose bytes are not those recorded: restoring it could be worse than not restoring. */
export async function assertChecksum(path: string, record: BackupRecord): Promise<void> {
  let actual: { sha256: string; sizeBytes: number };
  try {
    actual = await fileChecksum(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new DomainError("data_loss", `backup ${record.id}: its file is missing from the backup directory`);
    }
    throw error;
  }
  if (actual.sha256 !== record.sha256 || actual.sizeBytes !== record.sizeBytes) {
    throw new DomainError("data_loss", `backup ${record.id}: checksum mismatch, the file is not the one that was written; refusing to use it`);
  }
}

async function loadIntoNewDatabase(context: RestoreContext, target: RuntimeTarget, record: BackupRecord, path: string, database: string): Promise<void> {
  try {
    await createScratchLike(context.runtime, target, database);
    await loadBackupFile(context.runtime, target, path, database, { sha256: record.sha256 ?? "", sizeBytes: record.sizeBytes ?? -1 });
  } catch (error) {
    context.logger.error({ projectId: target.projectId, slug: target.slug, backupId: record.id, err: loggableError(error) }, "restore: loading the backup failed");
    if (error instanceof ChecksumMismatchError) {
      throw new DomainError("data_loss", `backup ${record.id}: ${error.message}; the database was not changed`);
    }
    throw new DomainError(kindOf(error), `restore failed: the backup did not load (${failureReason(error)}); the database was not changed`);
  }
}

/**
 * Both renames in one explicit transaction: a driver may run the string as
 * one query (node-postgres) or statement by statement (psql), and either way
 * a failure of the second rename must undo the first, never leave the name
 * without a database. Renaming needs the databases free of sessions;
 * PgBouncer's are gone after PAUSE, others (a monitoring session, a
 * straggler) are ended, and the rename is retried briefly for any that
 * connect in between.
 */
async function swap(runtime: Runtime, target: RuntimeTarget, incoming: string, outgoing: string): Promise<void> {
  const statement = [
    "BEGIN",
    `ALTER DATABASE ${quoteIdent(target.slug)} RENAME TO ${quoteIdent(outgoing)}`,
    `ALTER DATABASE ${quoteIdent(incoming)} RENAME TO ${quoteIdent(target.slug)}`,
    "COMMIT",
  ].join(";\n");
  for (let attempt = 1; ; attempt++) {
    await terminateSessions(runtime, target, [target.slug, incoming]);
    try {
      await runtime.adminQuery(target, statement);
      return;
    } catch (error) {
      if (attempt >= SWAP_ATTEMPTS) throw error;
      await sleep(50 * Math.min(attempt, 4));
    }
  }
}
