// Point-in-time restore and clone: a base backup replayed with the WAL
// streamed since, up to a second, by the runtime (PointInTimeRecovery.recover).
//
// Restore, in the database's dump lock (no dump or base backup runs meanwhile):
// the base backup's checksum (a changed file is refused before anything
// happens), a safety backup of the current state (a dump, as every restore
// takes), a flush of the WAL (so a target between the last commit and now has
// a commit after it to stop at), then the recovery. A database whose server
// does not run (its data lost: reported failed) has no state to save and no
// WAL to flush: everything it committed is in its archive, and the recovery
// brings it back. The runtime moves the old
// server aside and puts it back if the recovery fails, so a failed restore
// changes nothing; a new WAL generation starts, which the caller gives a base
// backup of its own. Same endpoint, same role, same password: the
// DATABASE_URL stays the same.
//
// Clone: the same recovery into a new database of another project, from the
// source's base backup and archive, which are only read.
import { DomainError, kindOf } from "../errors.js";
import { loggableError, type Logger } from "../log.js";
import type { DatabaseSpec, EnsureResult, PointInTimeRecovery, RuntimeTarget } from "../runtime/runtime.js";
import type { BackupRecord } from "../store/records.js";
import { failureReason } from "./backup-errors.js";
import { backupFilePath } from "./backup-paths.js";
import { readBaseBackupFile } from "./base-backup-file.js";
import { assertChecksum } from "./restore.js";

export interface PointInTimeContext {
  readonly pitr: PointInTimeRecovery;
  readonly backupDir: string;
  readonly logger: Logger;
}

export interface PointInTimeOutcome {
  readonly restored: BackupRecord;
  /** Absent when the database's server did not run: there was no state to save. */
  readonly safety?: BackupRecord;
  readonly targetTime: Date;
  /** The recovered database as the runtime reports it (same endpoint). */
  readonly result: EnsureResult;
}

/** What restoreToTime needs besides the runtime: how to save the current state, and where the recovery stops. */
export interface RestorePlan {
  /** A usable base backup of the spec's database whose WAL reaches the target (see BaseBackups.choose). */
  readonly base: BackupRecord;
  readonly time: Date;
  /** Replay everything the generation holds: the target is at its end (see replaysAll). */
  readonly replayAll: boolean;
  /** The database's server runs: a safety backup is taken and the WAL flushed first. */
  readonly live: boolean;
}

export async function restoreToTime(
  context: PointInTimeContext & { readonly takeSafetyBackup: () => Promise<BackupRecord> },
  spec: DatabaseSpec,
  plan: RestorePlan,
): Promise<PointInTimeOutcome> {
  const { pitr, logger } = context;
  const { base, time } = plan;
  const target = { projectId: spec.projectId, slug: spec.slug };
  const log = { projectId: target.projectId, slug: target.slug, backupId: base.id, targetTime: time.toISOString() };
  const path = backupFilePath(context.backupDir, base.slug, base.id, "base");
  await assertChecksum(path, base);

  let safety: BackupRecord | undefined;
  if (plan.live) {
    safety = await context.takeSafetyBackup();
    if (safety.state !== "succeeded") {
      throw new DomainError(
        "failed_precondition",
        `restore refused: the safety backup of the current state failed (${safety.error ?? "unknown reason"}); the database was not changed`,
      );
    }
  } else {
    logger.warn(log, "point-in-time restore of a database whose server does not run: no safety backup (there is no state to save)");
  }
  try {
    if (plan.live) await pitr.flushWal(target);
    const { generation, result } = await pitr.recover(spec, readBaseBackupFile(path, base), {
      source: target,
      generation: base.walGeneration!,
      ...(plan.replayAll ? {} : { time }),
    });
    logger.info({ ...log, ...(safety ? { safetyBackupId: safety.id } : {}), generation }, "database restored to a point in time");
    return { restored: base, ...(safety ? { safety } : {}), targetTime: time, result };
  } catch (error) {
    logger.error({ ...log, err: loggableError(error) }, "point-in-time restore failed");
    throw new DomainError(kindOf(error), `point-in-time restore failed (${failureReason(error)}); the database was not changed`);
  }
}

/** What a clone starts from, settled before the new database is recorded. */
export interface ClonePlan {
  readonly source: RuntimeTarget;
  readonly base: BackupRecord;
  /** Absent: everything the source's archive holds (the source as of the call, its WAL flushed first). */
  readonly time?: Date;
}

/** Makes the spec's new database from the plan's base backup and the source's archive; the source is only read. */
export async function cloneFromSource(context: PointInTimeContext, spec: DatabaseSpec, plan: ClonePlan, signal?: AbortSignal): Promise<EnsureResult> {
  const { pitr, logger } = context;
  const { base } = plan;
  const log = { projectId: spec.projectId, slug: spec.slug, sourceProjectId: plan.source.projectId, backupId: base.id, ...(plan.time ? { targetTime: plan.time.toISOString() } : {}) };
  const path = backupFilePath(context.backupDir, base.slug, base.id, "base");
  await assertChecksum(path, base);
  try {
    const { result } = await pitr.recover(
      spec,
      readBaseBackupFile(path, base),
      { source: plan.source, generation: base.walGeneration!, ...(plan.time ? { time: plan.time } : {}) },
      signal,
    );
    logger.info(log, "database cloned from another project's data");
    return result;
  } catch (error) {
    logger.error({ ...log, err: loggableError(error) }, "clone failed");
    throw new DomainError(kindOf(error), `clone failed (${failureReason(error)})`);
  }
}
