// Base backups: where every point-in-time restore and clone starts. Taken
// soon after a database is first ready (its recovery window starts there),
// after every point-in-time restore (a new WAL generation needs a base backup
// of its own), on the daily schedule beside the dump, and whenever the watch
// finds a ready database with no base backup of its current generation (a
// failed one, a start after a crash). They are backup records of format
// "base", listed with the dumps and pruned by the same retention, after which
// the WAL no kept base backup needs is removed.
//
// A few at a time over all databases (pg_basebackup reads the whole server),
// one per database, and under the database's dump lock: a restore, which
// replaces the server, never runs under a base backup's feet, and WAL is
// pruned only while no base backup of the database is being taken.
import { DomainError } from "../errors.js";
import { loggableError } from "../log.js";
import type { Coordination } from "../coordination/coordination.js";
import { newBackupId } from "../names.js";
import type { PointInTimeRecovery, RuntimeTarget, WalGeneration } from "../runtime/runtime.js";
import { newBackupRecord, type BackupRecord, type DatabaseRecord } from "../store/records.js";
import { failureReason } from "./backup-errors.js";
import type { BackupManagerOptions } from "./backup-manager.js";
import { backupFilePath, partialFilePath } from "./backup-paths.js";
import { writeBaseBackupFile } from "./base-backup-file.js";
import type { ScheduledDatabase } from "./backup-scheduler.js";
import { ConcurrencyLimit, LimitClosedError } from "./concurrency-limit.js";
import { baseBackupFor, covers, iso, recoveryWindow, replaysAll, usableBaseBackups, type RecoveryWindowView } from "./recovery-window.js";
import { expiryOf } from "./retention.js";
import { baseBackupBytes } from "./space-estimate.js";
import { walToKeep } from "./wal-retention.js";

/** How often the leader looks for ready databases with no base backup of their current generation. */
export const BASE_BACKUP_WATCH_MS = 10 * 60 * 1000;

/** The manager's own options it shares, and what it hands over. */
export interface BaseBackupsOptions extends Pick<BackupManagerOptions, "store" | "runtime" | "metrics" | "logger" | "dir" | "retentionDays" | "openOutput"> {
  readonly now: () => Date;
  readonly coordination: Coordination;
  /** Base backups running at once over all databases; default 1. */
  readonly concurrency?: number;
  /** After a base backup succeeded, outside its lock: retention of backups, then of WAL. */
  /** Off-host copy and retention, once a base backup succeeded. */
  readonly afterSuccess: (target: RuntimeTarget, record: BackupRecord) => Promise<void>;
  /** Refuses (throws) when the backup directory would drop below its reserve; logs and counts the refusal itself. */
  readonly assertSpace: (target: RuntimeTarget, bytes: number) => Promise<void>;
  /** Keeps background work known to the manager, whose close() waits for it. */
  readonly track: <T>(work: Promise<T>) => Promise<T>;
}

export class BaseBackups {
  private readonly running = new Map<string, Promise<BackupRecord | undefined>>();
  private readonly limit: ConcurrencyLimit;
  private watch: NodeJS.Timeout | undefined;

  constructor(private readonly options: BaseBackupsOptions) {
    this.limit = new ConcurrencyLimit(options.concurrency ?? 1);
  }

  /** The runtime's point-in-time recovery, or a refusal that says this runtime has none. */
  requirePitr(): PointInTimeRecovery {
    const pitr = this.options.runtime.pitr;
    if (!pitr) {
      throw new DomainError("unimplemented", `point-in-time recovery is not available on the ${this.options.runtime.kind} runtime of this server`);
    }
    return pitr;
  }

  /**
   * Takes a base backup of a ready database (one per database at a time: a
   * second call gets the running one). Resolves with its record, failed or
   * succeeded, or undefined when nothing was taken (no point-in-time
   * recovery here, or the database is not ready on this runtime).
   */
  take(target: RuntimeTarget): Promise<BackupRecord | undefined> {
    if (!this.options.runtime.pitr) return Promise.resolve(undefined);
    const existing = this.running.get(target.projectId);
    if (existing) return existing;
    const job = this.limit
      .run(() => this.options.coordination.withLock("dump", target.projectId, () => this.run(target)))
      .finally(() => this.running.delete(target.projectId));
    this.running.set(target.projectId, job);
    return this.options.track(
      job.then(async (record) => {
        if (record?.state === "succeeded") {
          await this.options
            .afterSuccess(target, record)
            .catch((error: unknown) => this.options.logger.error({ projectId: target.projectId, err: loggableError(error) }, "retention after a base backup failed"));
        }
        return record;
      }),
    );
  }

  /** take(), in the background: the caller (Ensure, a restore) does not wait. */
  soon(target: RuntimeTarget): void {
    if (!this.options.runtime.pitr) return;
    this.take(target).catch((error: unknown) => {
      if (error instanceof LimitClosedError) return;
      this.options.logger.error({ projectId: target.projectId, slug: target.slug, err: loggableError(error) }, "base backup could not run");
    });
  }

  /** Takes a base backup of each database that has none of its current WAL generation (none running either). */
  async takeMissing(databases: readonly ScheduledDatabase[]): Promise<void> {
    const pitr = this.options.runtime.pitr;
    if (!pitr) return;
    await Promise.all(
      databases.map(async (database) => {
        try {
          if (await this.lacksCurrent(pitr, database)) await this.take(database);
        } catch (error) {
          if (error instanceof LimitClosedError) return;
          this.options.logger.error({ projectId: database.projectId, slug: database.slug, err: loggableError(error) }, "could not check or take a missing base backup");
        }
      }),
    );
  }

  /** Runs takeMissing now and every BASE_BACKUP_WATCH_MS, until stopWatch(). */
  startWatch(databases: () => Promise<readonly ScheduledDatabase[]>, everyMs = BASE_BACKUP_WATCH_MS): void {
    if (this.watch || !this.options.runtime.pitr) return;
    const pass = () => void this.options.track(databases().then((list) => this.takeMissing(list))).catch(() => undefined);
    this.watch = setInterval(pass, everyMs);
    this.watch.unref();
    pass();
  }

  stopWatch(): void {
    clearInterval(this.watch);
    this.watch = undefined;
  }

  /** Refuses new base backups; those running finish (the manager waits for them). */
  close(): void {
    this.stopWatch();
    this.limit.close();
  }

  /** The database's recovery window; undefined without a base backup, or where it does not run here. */
  async window(database: DatabaseRecord): Promise<RecoveryWindowView | undefined> {
    const pitr = this.options.runtime.pitr;
    // A failed database too: one whose data is lost is brought back by a point-in-time restore.
    if (!pitr || (database.state !== "ready" && database.state !== "failed") || database.runtime !== this.options.runtime.kind) return undefined;
    const { bases, generations } = await this.usable(pitr, database);
    return recoveryWindow(bases, generations, this.options.now());
  }

  /**
   * The base backup a recovery of `database` to `time` starts from: the one
   * named (a base backup of this project whose WAL reaches `time`), or the
   * newest that does. Refusals: not_found (no such backup of this project),
   * invalid_argument (a dump), out_of_range (outside the window). With it,
   * whether the recovery replays everything the base backup's generation
   * holds (see replaysAll); `live`: the database's server runs and its WAL
   * is flushed before the recovery.
   */
  async choose(database: DatabaseRecord, time: Date, backupId: string | undefined, live: boolean): Promise<{ base: BackupRecord; replayAll: boolean }> {
    const pitr = this.requirePitr();
    const { bases, generations, records } = await this.usable(pitr, database);
    const base = this.startingPoint(bases, generations, records, database, time, backupId);
    return { base, replayAll: replaysAll(base, generations, time, live) };
  }

  private startingPoint(bases: BackupRecord[], generations: WalGeneration[], records: BackupRecord[], database: DatabaseRecord, time: Date, backupId: string | undefined): BackupRecord {
    const now = this.options.now();
    if (backupId === undefined) return baseBackupFor(bases, generations, time, now);
    const named = records.find((record) => record.id === backupId);
    if (!named) throw new DomainError("not_found", `backup ${backupId} not found for project ${database.projectId}`);
    if (named.format !== "base") {
      throw new DomainError(
        "invalid_argument",
        `backup ${backupId} is a dump: a dump is restored as it is, without target_time; with target_time, name a base backup or "-" to let the service pick one`,
      );
    }
    if (named.state !== "succeeded") throw new DomainError("failed_precondition", `backup ${backupId} is ${named.state}; only a succeeded base backup can be restored`);
    const usable = bases.find((base) => base.id === backupId);
    if (!usable) throw new DomainError("failed_precondition", `base backup ${backupId} belongs to a WAL generation this database no longer keeps`);
    if (!covers(usable, generations, time, now)) {
      // The window's refusal, so the caller learns what it can ask for.
      baseBackupFor(bases, generations, time, now);
      throw new DomainError("out_of_range", `target time ${iso(time)} is not reachable from base backup ${backupId}, which finished at ${iso(usable.finishedAt!)}; use "-" to let the service pick one`);
    }
    return usable;
  }

  /** Removes WAL no kept base backup needs, while no base backup of the database runs. */
  async pruneWal(target: RuntimeTarget): Promise<void> {
    const pitr = this.options.runtime.pitr;
    if (!pitr) return;
    await this.options.coordination.withLock("dump", target.projectId, async () => {
      const generations = await pitr.walGenerations(target);
      if (generations.length === 0) return;
      const kept = await this.options.store.listBackups(target.projectId);
      await pitr.pruneWal(target, walToKeep(kept, generations));
    });
  }

  private async usable(pitr: PointInTimeRecovery, database: DatabaseRecord): Promise<{ bases: BackupRecord[]; generations: WalGeneration[]; records: BackupRecord[] }> {
    const target = { projectId: database.projectId, slug: database.slug };
    const [generations, records] = await Promise.all([pitr.walGenerations(target), this.options.store.listBackups(database.projectId)]);
    return { bases: usableBaseBackups(records, generations, database.createdAt), generations, records };
  }

  private async lacksCurrent(pitr: PointInTimeRecovery, database: ScheduledDatabase): Promise<boolean> {
    const generations = await pitr.walGenerations(database);
    const current = generations[generations.length - 1];
    // Nothing streamed yet: the next look, once the receiver runs, decides.
    if (!current) return false;
    const records = await this.options.store.listBackups(database.projectId);
    return !records.some(
      (record) =>
        record.format === "base" &&
        record.startedAt.getTime() >= database.createdAt.getTime() &&
        (record.state === "running" || (record.state === "succeeded" && record.walGeneration === current.id)),
    );
  }

  /** Never rejects for a failed base backup: the failure is recorded, counted, logged and returned. */
  private async run(target: RuntimeTarget): Promise<BackupRecord | undefined> {
    const { store, runtime, dir, logger } = this.options;
    const pitr = runtime.pitr;
    // Read under the lock: a delete or a restore may have come first.
    const database = await store.getDatabase(target.projectId);
    if (!pitr || !database || database.state !== "ready" || database.slug !== target.slug || database.runtime !== runtime.kind) return undefined;
    try {
      await this.options.assertSpace(target, await baseBackupBytes(store, runtime, target));
    } catch (error) {
      // Refused before anything is recorded or written, as a dump is; the refusal is logged and counted.
      if (error instanceof DomainError) return undefined;
      throw error;
    }
    const startedAt = this.options.now();
    const record = newBackupRecord({ id: newBackupId(startedAt), projectId: target.projectId, slug: target.slug, kind: "scheduled", startedAt, format: "base" });
    // Recorded before any byte is written: start-up recovery finds every partial file through its record.
    await store.insertBackup(record);
    const log = { projectId: record.projectId, slug: record.slug, backupId: record.id, format: "base" };
    const started = performance.now();
    try {
      const written = await writeBaseBackupFile(
        pitr,
        target,
        { partialPath: partialFilePath(dir, record.slug, record.id, "base"), finalPath: backupFilePath(dir, record.slug, record.id, "base") },
        this.options.openOutput,
      );
      const succeeded = await store.updateBackup(record.id, {
        state: "succeeded",
        sizeBytes: written.sizeBytes,
        sha256: written.sha256,
        finishedAt: this.options.now(),
        expiresAt: expiryOf(record.startedAt, this.options.retentionDays),
        walGeneration: written.info.generation,
        walStartSegment: written.info.startSegment,
        error: null,
      });
      logger.info({ ...log, generation: written.info.generation, sizeBytes: written.sizeBytes, seconds: seconds(started) }, "base backup succeeded");
      return succeeded;
    } catch (error) {
      const failed = await store.updateBackup(record.id, {
        state: "failed",
        error: failureReason(error),
        finishedAt: this.options.now(),
        expiresAt: expiryOf(record.startedAt, this.options.retentionDays),
      });
      this.options.metrics.backupFailures.inc({ kind: "base" });
      logger.error({ ...log, seconds: seconds(started), err: loggableError(error) }, "base backup failed");
      return failed;
    }
  }
}

function seconds(started: number): number {
  return Math.round((performance.now() - started) / 100) / 10;
}
