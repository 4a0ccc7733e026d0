// BackupManager: the Backups port. Takes backups (one per database at a
// time), restores and verifies them, serves their files, prunes them, and
// runs the schedule. The steps themselves live in the files beside this one;
// this class decides what runs when, and keeps records and metrics true.
import { mkdir, open, type FileHandle } from "node:fs/promises";
import { DomainError } from "../errors.js";
import { loggableError, type Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { DatabaseSpec, EnsureResult, Runtime, RuntimeTarget } from "../runtime/runtime.js";
import { LocalCoordination, type Coordination } from "../coordination/coordination.js";
import { isBackupId, newBackupId } from "../names.js";
import type { OffsiteHooks } from "../offsite/offsite-copies.js";
import { OFFSITE_DISABLED, type ListedBackup } from "../offsite/offsite-view.js";
import { newBackupRecord, type BackupKind, type BackupRecord, type DatabaseRecord } from "../store/records.js";
import type { Store } from "../store/store.js";
import { failureReason, manualBackupLimitReached, notEnoughDiskSpace } from "./backup-errors.js";
import { writeBackupFile, type OpenOutput } from "./backup-file.js";
import { backupFilePath, partialFilePath } from "./backup-paths.js";
import { resumeInterruptedRestores } from "./pause-marker.js";
import { BackupScheduler, type ScheduledDatabase } from "./backup-scheduler.js";
import type { BackupDownload, Backups } from "./backups.js";
import { findShortage, type FreeSpaceReserve, type SpaceNeed } from "./free-space.js";
import { LoadSlots } from "./load-slots.js";
import { LimitClosedError } from "./concurrency-limit.js";
import { ManualBackupLimit, type RollingLimit } from "./manual-backup-limit.js";
import { backupBytes, scratchCopyBytes } from "./space-estimate.js";
import { restoreFromBackup, assertChecksum } from "./restore.js";
import { backupExpiry, expiryOf, newestSucceeded, pruneBackups, type DeletedRetention } from "./retention.js";
import { recoverInterruptedBackups } from "./startup-recovery.js";
import { verifyBackupLoads } from "./verify.js";
import { BaseBackups } from "./base-backups.js";
import { verifyBaseBackupFile } from "./base-backup-check.js";
import { cloneFromSource, restoreToTime, type ClonePlan, type PointInTimeOutcome } from "./point-in-time-restore.js";
import type { RecoveryWindowView } from "./recovery-window.js";

export interface BackupScheduleOptions {
  /** croner expression, e.g. "0 3 * * *" (SOTA_BACKUP_SCHEDULE). */
  readonly cron: string;
  /** Scheduled backups running at once (SOTA_BACKUP_CONCURRENCY); default 2. */
  readonly concurrency?: number;
  /** Verify every scheduled backup after it succeeds (SOTA_BACKUP_VERIFY). */
  readonly verify?: boolean;
  /** Delay of the start-up catch-up; default 30 s. */
  readonly catchUpDelayMs?: number;
}

export interface BackupManagerOptions {
  readonly store: Store;
  readonly runtime: Runtime;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Backups live in {dir}/{slug}/{backup_id}.sql.gz (SOTA_BACKUP_DIR). */
  readonly dir: string;
  readonly retentionDays: number;
  /** Days a deleted database's backups are kept after the delete (SOTA_DELETED_RETENTION_DAYS); default 30. */
  readonly deletedRetentionDays?: number;
  readonly now?: () => Date;
  /** Without it only manual and safety backups are taken. Runs from start(). */
  readonly schedule?: BackupScheduleOptions;
  /** How long open transactions may run once a restore pauses the database; default 5 s. */
  readonly pauseGraceMs?: number;
  /** How long a restore waits for PgBouncer to pause in all; default 30 s. */
  readonly pauseTimeoutMs?: number;
  /** Manual backups and restores one project token may start per rolling window (SOTA_BACKUP_MANUAL_LIMIT); unset: no limit. */
  readonly manualLimit?: RollingLimit;
  /** Verifications and restores loading a scratch copy at once, over all projects (SOTA_BACKUP_LOAD_CONCURRENCY); default 2. */
  readonly loadConcurrency?: number;
  /** Free space kept on each file system a backup, verification or restore writes to (SOTA_BACKUP_MIN_FREE); default none. */
  readonly minFree?: FreeSpaceReserve;
  /** Where the runtime keeps databases, and so scratch copies (the process runtime's data dir); unset where the service cannot see it. */
  readonly scratchDir?: string;
  /**
   * Replicas sharing the state: dumps and restores of a database exclude each
   * other on every replica, and only the leader runs the schedule. Default:
   * one service (in-process locks, always leading).
   */
  readonly coordination?: Coordination;
  /** Test seam: where compressed bytes are written (a disk that fails). */
  readonly openOutput?: OpenOutput;
  /** Off-host copies (SOTA_BACKUP_S3_*): told of every succeeded and expired backup, asked when listing and restoring. */
  readonly offsite?: OffsiteHooks;
}

interface RunningBackup {
  readonly record: BackupRecord;
  /** Settles once the record is stored. */
  readonly recorded: Promise<void>;
  readonly done: Promise<BackupRecord>;
}

/** Recovers what a killed process left behind, then returns a manager ready for calls; call start() for the schedule. */
export async function createBackupManager(options: BackupManagerOptions): Promise<BackupManager> {
  const now = options.now ?? (() => new Date());
  await mkdir(options.dir, { recursive: true, mode: 0o700 });
  const interrupted = await recoverOrphans(options, now());
  const manager = new BackupManager(options);
  manager.interrupted.push(...interrupted);
  await manager.publishLastSuccess();
  return manager;
}

/**
 * Backups left `running` by a process that is gone (this one, killed, or
 * another replica) are marked failed and their files removed; a live
 * replica's running backup holds its dump lock and is left alone.
 */
async function recoverOrphans(options: BackupManagerOptions, now: Date): Promise<BackupRecord[]> {
  const coordination = options.coordination;
  return recoverInterruptedBackups({
    store: options.store,
    backupDir: options.dir,
    now,
    metrics: options.metrics,
    logger: options.logger,
    ...(coordination
      ? {
          whenUnheld: async (projectId: string, work: () => Promise<void>) =>
            (await coordination.tryWithLock("dump", projectId, async () => (await work(), true))) ?? false,
        }
      : {}),
  });
}

export class BackupManager implements Backups {
  readonly scheduler: BackupScheduler | undefined;
  /** Base backups and the WAL they need: point-in-time restore and clone (see base-backups.ts). */
  private readonly base: BaseBackups;
  private readonly now: () => Date;
  private readonly logger: Logger;
  /** The backup running for each project: one per database at a time. */
  private readonly running = new Map<string, RunningBackup>();
  /** Dumps and restores of one database never overlap (a restore's swap would end a dump's session), on any replica. */
  private readonly coordination: Coordination;
  /** Backups a restore, verification or download is reading: retention leaves them alone. */
  private readonly pinned = new Map<string, number>();
  private readonly verifying = new Map<string, Promise<BackupRecord>>();
  private readonly scratchInUse = new Set<string>();
  private readonly work = new Set<Promise<unknown>>();
  private readonly loads: LoadSlots;
  private readonly manualLimit: ManualBackupLimit | undefined;
  private closed = false;
  /** Backups found interrupted (failed by recovery) and not yet looked at by a leader: scheduled ones are taken again. */
  readonly interrupted: BackupRecord[] = [];

  constructor(private readonly options: BackupManagerOptions) {
    this.now = options.now ?? (() => new Date());
    this.logger = options.logger;
    this.loads = new LoadSlots(options.loadConcurrency ?? 2);
    this.manualLimit = options.manualLimit ? new ManualBackupLimit(options.manualLimit, () => this.now().getTime()) : undefined;
    this.coordination = options.coordination ?? new LocalCoordination("local");
    this.base = new BaseBackups({
      ...options,
      now: this.now,
      coordination: this.coordination,
      afterSuccess: async (target, record) => {
        this.options.offsite?.backupSucceeded(record);
        await this.prune(target.projectId);
        await this.base.pruneWal(target);
      },
      assertSpace: (target, bytes) => this.assertSpace("backup", "base", target, [{ dir: this.options.dir, bytes }]),
      track: (work) => this.track(work),
    });
    const schedule = options.schedule;
    this.scheduler = schedule
      ? new BackupScheduler({
          cron: schedule.cron,
          concurrency: schedule.concurrency ?? 2,
          verify: schedule.verify ?? false,
          catchUpDelayMs: schedule.catchUpDelayMs ?? 30_000,
          databases: () => this.scheduledDatabases(),
          lastSuccess: async (projectId) => newestSucceeded(await options.store.listBackups(projectId), "dump")?.finishedAt ?? undefined,
          backup: (target) => this.scheduledBackups(target),
          // The schedule's verifications wait for a load slot; the API's are refused when none is free.
          verifyBackup: (target, backupId) => this.startVerification(target, backupId, (task) => this.loads.runQueued(task)),
          prune: () => this.pruneAll(),
          claimSlots: (slots) => options.store.claimScheduledRuns(slots, this.coordination.replica),
          lastSlot: () => options.store.lastScheduledRun(),
          now: this.now,
          logger: this.logger,
        })
      : undefined;
  }

  /**
   * Resumes databases a killed restore left paused, then campaigns for the
   * lead: the schedule (and with it the retention pass) runs only while this
   * replica leads. Call once the runtime has brought the databases back.
   */
  start(): void {
    this.track(resumeInterruptedRestores(this.options.dir, this.options.runtime, this.logger));
    this.coordination.lead({
      elected: () => {
        this.options.metrics.schedulerLeader.set(1);
        if (this.closed) return;
        this.scheduler?.start();
        this.base.startWatch(() => this.scheduledDatabases());
        const retaken = this.retakeInterrupted().catch((error: unknown) =>
          this.logger.error({ err: loggableError(error) }, "could not settle or retake backups a stopped service left running"),
        );
        this.track(retaken);
      },
      deposed: () => {
        this.options.metrics.schedulerLeader.set(0);
        // Backups already running finish; nothing new starts until the lead comes back.
        if (this.scheduler) this.track(this.scheduler.stop());
        this.base.stopWatch();
      },
    });
  }

  /**
   * A leader that died mid-backup left it running: the new one settles it
   * (failed, "interrupted") and takes the scheduled ones again now, so the
   * slot's backup is not lost with the replica (or the killed service).
   */
  private async retakeInterrupted(): Promise<void> {
    const found = [...this.interrupted.splice(0), ...(this.options.coordination ? await recoverOrphans(this.options, this.now()) : [])];
    // An interrupted base backup is the watch's to take again.
    const projects = new Set(found.filter((record) => record.kind === "scheduled" && record.format === "dump").map((record) => record.projectId));
    if (projects.size === 0 || !this.scheduler || this.closed) return;
    const databases = (await this.scheduledDatabases()).filter((database) => projects.has(database.projectId));
    await this.scheduler.runPass(databases, "interrupted");
  }

  /**
   * One backup per database at a time: while one runs (of any kind), a new
   * request gets that one, at once or, with wait, once it has finished.
   * Before a new one starts: a tenant's request must be within the project's
   * manual limit, and the backup directory must have room for it above the
   * reserve; a refusal leaves no record and no file.
   */
  async create(target: RuntimeTarget, kind: BackupKind, options: { wait: boolean; byTenant?: boolean }): Promise<BackupRecord> {
    this.assertOpen();
    let job = this.running.get(target.projectId);
    if (!job) {
      if (options.byTenant) this.assertManualAllowed(target.projectId);
      const bytes = await backupBytes(this.options.store, this.options.runtime, target);
      await this.assertSpace("backup", kind, target, [{ dir: this.options.dir, bytes }]);
      this.assertOpen();
      // Another request may have started one while the disk was looked at: join it, it costs nothing.
      job = this.running.get(target.projectId);
      if (!job) {
        if (options.byTenant) this.takeManual(target.projectId);
        job = this.startBackup(target, kind, false);
      }
    }
    if (options.wait) return job.done;
    await job.recorded;
    return job.record;
  }

  async list(projectId: string): Promise<ListedBackup[]> {
    // Expiry follows the retention configured now, even for backups written under another.
    const [records, deleted] = await Promise.all([this.options.store.listBackups(projectId), this.deletedRetention(projectId)]);
    const listed = records.map((record) =>
      record.state === "running" ? record : { ...record, expiresAt: backupExpiry(record, this.options.retentionDays, deleted) },
    );
    if (this.options.offsite) return this.options.offsite.describe(projectId, listed);
    return listed.map((record) => (record.state === "succeeded" ? { ...record, offsite: OFFSITE_DISABLED } : record));
  }

  /**
   * A tenant's restore counts against the manual limit (it writes a safety
   * backup); every restore needs a load slot, and room for the safety backup
   * and the scratch copy above the reserve, before anything starts.
   */
  async restore(target: RuntimeTarget, backupId: string, options: { byTenant?: boolean } = {}): Promise<{ restored: BackupRecord; safety: BackupRecord }> {
    this.assertOpen();
    const record = await this.succeededBackup(target.projectId, backupId, "restored");
    if (record.format === "base") {
      throw new DomainError("invalid_argument", `backup ${backupId} is a base backup: restore it to a point in time with target_time, or restore a dump`);
    }
    return this.inRestoreSlot(target, record, options, () => this.runRestore(target, record));
  }

  /**
   * What every restore goes through before it starts: the manual limit (a
   * tenant's), a load slot, `record` pinned against retention, and room for
   * the safety backup and the new copy (a scratch database, or a recovered
   * server) above the reserve.
   */
  private inRestoreSlot<T>(
    target: RuntimeTarget,
    record: BackupRecord,
    options: { byTenant?: boolean; withSafetyBackup?: boolean },
    work: () => Promise<T>,
  ): Promise<T> {
    if (options.byTenant) this.assertManualAllowed(target.projectId);
    return this.track(
      this.loads.runNow(target.projectId, () =>
        this.withPinned(record.id, async () => {
          const [safetyBytes, loadBytes] = await Promise.all([
            options.withSafetyBackup === false ? 0 : backupBytes(this.options.store, this.options.runtime, target),
            scratchCopyBytes(this.options.runtime, target, record),
          ]);
          await this.assertSpace("restore", "safety", target, [
            { dir: this.options.dir, bytes: safetyBytes },
            ...(this.options.scratchDir ? [{ dir: this.options.scratchDir, bytes: loadBytes }] : []),
          ]);
          this.assertOpen();
          if (options.byTenant) this.takeManual(target.projectId);
          return work();
        }),
      ),
    );
  }

  private async runRestore(target: RuntimeTarget, record: BackupRecord): Promise<{ restored: BackupRecord; safety: BackupRecord }> {
    const context = {
      runtime: this.options.runtime,
      backupDir: this.options.dir,
      logger: this.logger,
      scratchInUse: this.scratchInUse,
      pauseGraceMs: this.options.pauseGraceMs ?? 5_000,
      pauseTimeoutMs: this.options.pauseTimeoutMs ?? 30_000,
      // Already inside the exclusive section: the safety backup must not queue behind it.
      takeSafetyBackup: () => this.startBackup(target, "safety", true).done,
    };
    const path = backupFilePath(this.options.dir, record.slug, record.id);
    // A local file that is gone or damaged comes back from its off-host copy, checked, before the restore's own check.
    await this.options.offsite?.ensureLocalCopy(record, path);
    return this.coordination.withLock("dump", target.projectId, () => restoreFromBackup(context, target, record, path));
  }

  /**
   * Restores into a scratch database and records the outcome; a second call
   * while one runs joins it. Refused up front when no load slot is free or the
   * scratch copy would not fit above the reserve.
   */
  async verify(target: RuntimeTarget, backupId: string): Promise<BackupRecord> {
    return this.startVerification(target, backupId, (task) => this.loads.runNow(target.projectId, task));
  }

  private async startVerification(
    target: RuntimeTarget,
    backupId: string,
    inSlot: (task: () => Promise<BackupRecord>) => Promise<BackupRecord>,
  ): Promise<BackupRecord> {
    this.assertOpen();
    const record = await this.succeededBackup(target.projectId, backupId, "verified");
    const existing = this.verifying.get(record.id);
    if (existing) return existing;
    const verification = this.track(
      inSlot(() =>
        this.withPinned(record.id, async () => {
          if (this.options.scratchDir && record.format === "dump") {
            const bytes = await scratchCopyBytes(this.options.runtime, target, record);
            await this.assertSpace("verification", "verify", target, [{ dir: this.options.scratchDir, bytes }]);
          }
          return this.runVerification(target, record);
        }),
      ),
    );
    this.verifying.set(record.id, verification);
    void verification.finally(() => this.verifying.delete(record.id)).catch(() => undefined);
    return verification;
  }

  /** The scheduled pass's work for one database: the dump, then a base backup (its failure is its own, recorded and counted). */
  private async scheduledBackups(target: RuntimeTarget): Promise<BackupRecord> {
    const dump = await this.create(target, "scheduled", { wait: true });
    await this.base.take(target).catch((error: unknown) => {
      if (!(error instanceof LimitClosedError)) this.logger.error({ projectId: target.projectId, err: loggableError(error) }, "scheduled base backup could not run");
    });
    return dump;
  }

  /**
   * As restore(), to a point in time: refusals (window, backup, manual limit,
   * load slot, disk) before anything starts; the new WAL generation gets its
   * base backup once the restore has released the database.
   */
  async restoreToTime(spec: DatabaseSpec, backupId: string | undefined, time: Date, options: { byTenant?: boolean } = {}): Promise<PointInTimeOutcome> {
    this.assertOpen();
    const target = { projectId: spec.projectId, slug: spec.slug };
    const pitr = this.base.requirePitr();
    const database = await this.options.store.getDatabase(spec.projectId);
    if (!database) throw new DomainError("not_found", `project ${spec.projectId} has no database`);
    // A server that does not run (its data lost) has nothing to save or flush: the archive holds what it committed.
    const live = database.state === "ready" && (await this.options.runtime.status(target)).state === "running";
    const { base, replayAll } = await this.base.choose(database, time, backupId, live);
    // A base backup whose file is gone or damaged here comes back from its off-host copy.
    await this.options.offsite?.ensureLocalCopy(base, backupFilePath(this.options.dir, base.slug, base.id, "base"));
    return this.inRestoreSlot(target, base, { ...options, withSafetyBackup: live }, async () => {
      const context = {
        pitr,
        backupDir: this.options.dir,
        logger: this.logger,
        // Already inside the exclusive section: the safety backup must not queue behind it.
        takeSafetyBackup: () => this.startBackup(target, "safety", true).done,
      };
      const outcome = await this.coordination.withLock("dump", target.projectId, () => restoreToTime(context, spec, { base, time, replayAll, live }));
      // The recovery opened a new WAL generation, which no base backup reaches
      // yet: taken before the call returns, so that the recovery window covers
      // every second from the restore on (a clone or another restore "now"
      // right after it works). Its failure does not undo the restore: logged,
      // and the leader's check takes it again.
      await this.base.take(target).catch((error: unknown) =>
        this.logger.error({ projectId: target.projectId, slug: target.slug, err: loggableError(error) }, "base backup after a point-in-time restore failed"),
      );
      return outcome;
    });
  }

  recoveryWindow(database: DatabaseRecord): Promise<RecoveryWindowView | undefined> {
    return this.base.window(database);
  }

  async planClone(source: DatabaseRecord, time?: Date): Promise<ClonePlan> {
    this.assertOpen();
    const pitr = this.base.requirePitr();
    const target = { projectId: source.projectId, slug: source.slug };
    // "Now" is the source's last commit once everything before the call is archived.
    const at = time ?? (await pitr.flushWal(target));
    const { base, replayAll } = await this.base.choose(source, at, undefined, true);
    // Without a time, or at the end of what the archive holds: everything it holds.
    return { source: target, base, ...(time && !replayAll ? { time } : {}) };
  }

  /** A load slot for the new project, the base backup pinned against retention, room for the new server; then the recovery. */
  async clone(spec: DatabaseSpec, plan: ClonePlan, signal?: AbortSignal): Promise<EnsureResult> {
    this.assertOpen();
    const pitr = this.base.requirePitr();
    const target = { projectId: spec.projectId, slug: spec.slug };
    return this.track(
      this.loads.runNow(spec.projectId, () =>
        this.withPinned(plan.base.id, async () => {
          if (this.options.scratchDir) {
            const bytes = await scratchCopyBytes(this.options.runtime, plan.source, plan.base);
            await this.assertSpace("clone", "clone", target, [{ dir: this.options.scratchDir, bytes }]);
          }
          this.assertOpen();
          await this.options.offsite?.ensureLocalCopy(plan.base, backupFilePath(this.options.dir, plan.base.slug, plan.base.id, "base"));
          return cloneFromSource({ pitr, backupDir: this.options.dir, logger: this.logger }, spec, plan, signal);
        }),
      ),
    );
  }

  baseBackupSoon(target: RuntimeTarget): void {
    if (!this.closed) this.base.soon(target);
  }

  async download(projectId: string, backupId: string): Promise<BackupDownload> {
    const record = await this.succeededBackup(projectId, backupId, "downloaded");
    if (record.format === "base") {
      throw new DomainError(
        "failed_precondition",
        `backup ${backupId} is a base backup (a copy of the whole server, for point-in-time restore and clone): it is not downloadable; download a dump`,
      );
    }
    const path = backupFilePath(this.options.dir, record.slug, record.id);
    let handle: FileHandle;
    try {
      // Opened now, so retention deleting the file later cannot cut the download short.
      handle = await this.withPinned(record.id, () => openLocalOrOffsite(path, () => this.options.offsite?.ensureLocalCopy(record, path)));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        throw new DomainError("data_loss", `backup ${record.id}: its file is missing from the backup directory`);
      }
      throw error;
    }
    const { size } = await handle.stat();
    if (size !== record.sizeBytes) {
      await handle.close();
      throw new DomainError("data_loss", `backup ${record.id}: the file's size differs from the recorded one; refusing to serve it`);
    }
    return { record, sizeBytes: size, sha256: record.sha256 ?? "", stream: () => handle.createReadStream() };
  }

  /** Stops the schedule, refuses new work, waits for running backups, restores and verifications. */
  async close(): Promise<void> {
    this.closed = true;
    this.loads.close();
    this.base.close();
    await this.scheduler?.stop();
    await Promise.allSettled([...this.work]);
  }

  /** Retention over every project that has backups. */
  async pruneAll(): Promise<void> {
    const { store } = this.options;
    // The record of slots run needs no longer memory than the backups it led to.
    await store.forgetScheduledRunsBefore(expiryOf(this.now(), -this.options.retentionDays));
    const records = [...(await store.listBackupsByState("succeeded")), ...(await store.listBackupsByState("failed"))];
    // Deleted databases too, so that one with no backup left is forgotten.
    const deleted = (await store.listDatabases()).filter((database) => database.state === "deleted");
    const projects = new Set([...records, ...deleted].map((record) => record.projectId));
    for (const projectId of projects) await this.prune(projectId);
    for (const database of await this.scheduledDatabases()) {
      await this.base.pruneWal(database).catch((error: unknown) =>
        this.logger.error({ projectId: database.projectId, err: loggableError(error) }, "WAL retention failed"),
      );
    }
  }

  private startBackup(target: RuntimeTarget, kind: BackupKind, holdingExclusive: boolean): RunningBackup {
    const startedAt = this.now();
    const record = newBackupRecord({ id: newBackupId(startedAt), projectId: target.projectId, slug: target.slug, kind, startedAt });
    // Recorded before any byte is written: startup recovery finds every partial file through its record.
    // Started before the lock, so a caller that does not wait finds the record at once.
    const recorded = this.options.store.insertBackup(record);
    recorded.catch(() => undefined);
    const run = async (): Promise<BackupRecord> => {
      await recorded;
      return this.runBackup(target, record);
    };
    const done = (holdingExclusive ? run() : this.coordination.withLock("dump", target.projectId, run)).finally(() => {
      if (this.running.get(target.projectId)?.record.id === record.id) this.running.delete(target.projectId);
    });
    const job = { record, recorded, done };
    this.running.set(target.projectId, job);
    this.track(done);
    return job;
  }

  /** Never rejects for a failed backup: the failure is recorded, counted, logged and returned. */
  private async runBackup(target: RuntimeTarget, record: BackupRecord): Promise<BackupRecord> {
    const { store, metrics, dir } = this.options;
    const log = { projectId: record.projectId, slug: record.slug, backupId: record.id, kind: record.kind };
    const started = performance.now();
    try {
      const written = await writeBackupFile({
        source: this.options.runtime.dump(target),
        partialPath: partialFilePath(dir, record.slug, record.id),
        finalPath: backupFilePath(dir, record.slug, record.id),
        ...(this.options.openOutput ? { openOutput: this.options.openOutput } : {}),
      });
      const finishedAt = this.now();
      const succeeded = await store.updateBackup(record.id, {
        state: "succeeded",
        sizeBytes: written.sizeBytes,
        sha256: written.sha256,
        finishedAt,
        expiresAt: expiryOf(record.startedAt, this.options.retentionDays),
        error: null,
      });
      metrics.backupLastSuccess.set({ project_id: record.projectId }, finishedAt.getTime() / 1000);
      this.logger.info({ ...log, sizeBytes: written.sizeBytes, seconds: seconds(started) }, "backup succeeded");
      this.options.offsite?.backupSucceeded(succeeded);
      await this.prune(record.projectId);
      return succeeded;
    } catch (error) {
      const failed = await store.updateBackup(record.id, {
        state: "failed",
        error: failureReason(error),
        finishedAt: this.now(),
        expiresAt: expiryOf(record.startedAt, this.options.retentionDays),
      });
      metrics.backupFailures.inc({ kind: record.kind });
      this.logger.error({ ...log, seconds: seconds(started), err: loggableError(error) }, "backup failed");
      return failed;
    }
  }

  private async runVerification(target: RuntimeTarget, record: BackupRecord): Promise<BackupRecord> {
    const path = backupFilePath(this.options.dir, record.slug, record.id, record.format);
    let outcome: { passed: boolean; error: string | null };
    try {
      if (record.format === "base") {
        // A whole server cannot be loaded into a scratch database: its file is checked as far as it can be without starting it.
        outcome = await verifyBaseBackupFile(path, record);
      } else {
        // Cheap and first: no point loading bytes that are not the ones written.
        await assertChecksum(path, record);
        outcome = await verifyBackupLoads({ runtime: this.options.runtime, logger: this.logger, scratchInUse: this.scratchInUse }, target, record, path);
      }
    } catch (error) {
      // The checksum's refusals are outcomes; an error reading the file is not.
      if (!(error instanceof DomainError)) throw error;
      this.logger.error({ projectId: record.projectId, backupId: record.id, err: loggableError(error) }, "backup verification failed");
      outcome = { passed: false, error: error.message };
    }
    const updated = await this.options.store.updateBackup(record.id, {
      verification: outcome.passed ? "passed" : "failed",
      verifiedAt: this.now(),
      verificationError: outcome.error,
    });
    if (!outcome.passed) this.options.metrics.backupFailures.inc({ kind: "verify" });
    else this.logger.info({ projectId: record.projectId, backupId: record.id }, "backup verified");
    return updated;
  }

  /** The rule for a deleted database's backups, when the project's database is deleted. */
  private async deletedRetention(projectId: string): Promise<DeletedRetention | undefined> {
    const database = await this.options.store.getDatabase(projectId);
    // Nothing updates a deleted record: its updatedAt is when it was deleted.
    return database?.state === "deleted" ? { deletedAt: database.updatedAt, days: this.options.deletedRetentionDays ?? 30 } : undefined;
  }

  private async prune(projectId: string): Promise<void> {
    const run = async () => {
      const deleted = await this.deletedRetention(projectId);
      const expired = await pruneBackups({
        store: this.options.store,
        backupDir: this.options.dir,
        projectId,
        now: this.now(),
        retentionDays: this.options.retentionDays,
        inUse: new Set(this.pinned.keys()),
        ...(deleted ? { deleted } : {}),
        logger: this.logger,
      });
      // Retention applies in the bucket too.
      await this.options.offsite?.backupsDeleted(projectId, expired);
    };
    await run().catch((error: unknown) => this.logger.error({ projectId, err: loggableError(error) }, "backup retention failed"));
  }

  private assertManualAllowed(projectId: string): void {
    const waitMs = this.manualLimit?.waitMs(projectId) ?? 0;
    if (waitMs > 0) throw manualBackupLimitReached(this.manualLimit!.limit.count, this.manualLimit!.limit.windowMs, waitMs);
  }

  /** Counts a tenant's start; checked again here because the disk check awaited since the first look. */
  private takeManual(projectId: string): void {
    this.assertManualAllowed(projectId);
    this.manualLimit?.take(projectId);
  }

  /**
   * Refuses the work when a file system it writes to would drop below the
   * reserve. The caller hears only that space is short; sizes and paths are
   * the host's business and go to the log, at error level: an operator must act.
   */
  private async assertSpace(action: "backup" | "verification" | "restore" | "clone", kind: string, target: RuntimeTarget, needs: SpaceNeed[]): Promise<void> {
    const shortage = await findShortage(needs, this.options.minFree ?? { bytes: 0 });
    if (!shortage) return;
    this.logger.error({ projectId: target.projectId, slug: target.slug, action, ...shortage }, `${action} refused: not enough free disk space`);
    // A scheduled backup refused here must alert like one that failed.
    if (action === "backup" || action === "verification") this.options.metrics.backupFailures.inc({ kind });
    throw notEnoughDiskSpace(action);
  }

  /** A backup of this project (another project's id is NotFound, never a hint that it exists) that has succeeded. */
  private async succeededBackup(projectId: string, backupId: string, action: string): Promise<BackupRecord> {
    if (!isBackupId(backupId)) throw new DomainError("invalid_argument", "backup_id is not a backup id");
    const record = await this.options.store.getBackup(projectId, backupId);
    if (!record) throw new DomainError("not_found", `backup ${backupId} not found for project ${projectId}`);
    if (record.state !== "succeeded") {
      throw new DomainError("failed_precondition", `backup ${backupId} is ${record.state}; only a succeeded backup can be ${action}`);
    }
    return record;
  }

  private async scheduledDatabases(): Promise<ScheduledDatabase[]> {
    return (await this.options.store.listDatabases())
      .filter((database) => database.state === "ready" && database.runtime === this.options.runtime.kind)
      .map((database) => ({ projectId: database.projectId, slug: database.slug, createdAt: database.createdAt }));
  }

  /** The alerting gauge must be right from the first scrape, not only after the next backup. */
  async publishLastSuccess(): Promise<void> {
    const newest = new Map<string, number>();
    for (const record of await this.options.store.listBackupsByState("succeeded")) {
      // The gauge alerts on the daily dump, the portable copy; base backups have their own failure count.
      if (record.format !== "dump") continue;
      const at = (record.finishedAt ?? record.startedAt).getTime();
      if (at > (newest.get(record.projectId) ?? 0)) newest.set(record.projectId, at);
    }
    // A deleted database takes no more backups: a gauge for it would only grow old and alert.
    const deleted = new Set((await this.options.store.listDatabases()).filter((database) => database.state === "deleted").map((database) => database.projectId));
    for (const [projectId, at] of newest) {
      if (!deleted.has(projectId)) this.options.metrics.backupLastSuccess.set({ project_id: projectId }, at / 1000);
    }
  }

  private async withPinned<T>(backupId: string, work: () => Promise<T>): Promise<T> {
    this.pinned.set(backupId, (this.pinned.get(backupId) ?? 0) + 1);
    try {
      return await work();
    } finally {
      const left = (this.pinned.get(backupId) ?? 1) - 1;
      if (left > 0) this.pinned.set(backupId, left);
      else this.pinned.delete(backupId);
    }
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    const settled = promise.then(
      () => undefined,
      () => undefined,
    );
    this.work.add(settled);
    void settled.then(() => this.work.delete(settled));
    return promise;
  }

  private assertOpen(): void {
    if (this.closed) throw new DomainError("unavailable", "the backup service is shutting down");
  }
}

/** The file; when it is missing here, first fetched back from its off-host copy (a backup another host took: disaster recovery). */
async function openLocalOrOffsite(path: string, fetch: () => Promise<void> | undefined): Promise<FileHandle> {
  try {
    return await open(path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    await fetch();
    return open(path, "r");
  }
}

function seconds(started: number): number {
  return Math.round((performance.now() - started) / 100) / 10;
}
