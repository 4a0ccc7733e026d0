// DatabaseService use-cases: provisioning, describing and connecting to a
// project's database, and handing backups to the Backups port. Knows the ports
// (Runtime, Store, Sealer, Backups), never Docker, processes or files.
import { randomBytes } from "node:crypto";
import type { Backups, PointInTimeOutcome, RecoveryWindowView } from "../backup/backups.js";
import type { ListedBackup } from "../offsite/offsite-view.js";
import { DomainError, kindOf } from "../errors.js";
import { loggableError, type Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { DatabaseSpec, EnsureResult, Runtime, RuntimeTarget } from "../runtime/runtime.js";
import { SealError, type Sealer } from "../secrets/sealer.js";
import { newDatabaseRecord, NOTHING_RUNNING, type BackupRecord, type DatabaseRecord } from "../store/records.js";
import { slugTaken, type Store } from "../store/store.js";
import { LocalCoordination, type Coordination } from "../coordination/coordination.js";
import { normalizeProjectId, slugForProject, slugProblemFor, isBackupId } from "../names.js";
import { databaseUrl, sessionUrl } from "./database-url.js";
import { figuresOf, figuresOfEach, type FiguresOutcome } from "./database-figures.js";
import { applyLimitsChange, checkLimitsChange, isLimitsChange, runtimeLimits, type LimitsChange } from "./limits-override.js";
import { SizeQuotas, type SizeQuotaReport } from "./size-quota.js";
import type { LimitsStatus } from "../runtime/runtime.js";
import type { DisasterRecovery } from "../backup/bucket-recovery.js";
import { ensureFromBucket, type FromBucket } from "./bucket-ensure.js";

export type { RecoveryWindowView };

export interface DatabaseServiceDeps {
  readonly runtime: Runtime;
  readonly store: Store;
  readonly sealer: Sealer;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly backups?: Backups;
  /**
   * Serializes each project's use-cases across every service sharing the
   * state (one password, one outcome). Default: one service, in-process.
   */
  readonly coordination?: Coordination;
  readonly now?: () => Date;
  /** Every database's size quota in MiB unless its project overrides it (SOTA_DB_SIZE_QUOTA_MB); default 0, none. */
  readonly sizeQuotaMb?: number;
  /**
   * Object storage to look in when Ensure meets a project with no record
   * (disaster recovery, see bucket-ensure.ts); absent: no bucket, or the
   * lookup is switched off (SOTA_BACKUP_S3_RECOVER_ON_ENSURE=false).
   */
  readonly recovery?: DisasterRecovery;
}

export interface EnsureOutcome {
  readonly database: DatabaseRecord;
  readonly created: boolean;
}

export class DatabaseService {
  private readonly coordination: Coordination;
  private readonly now: () => Date;
  private readonly quotas: SizeQuotas;

  constructor(private readonly deps: DatabaseServiceDeps) {
    this.now = deps.now ?? (() => new Date());
    this.quotas = new SizeQuotas(deps, deps.sizeQuotaMb ?? 0);
    this.coordination = deps.coordination ?? new LocalCoordination("local");
  }

  /** `limits`: a change of the project's limits override, stored before the database is provisioned with it. */
  async ensure(rawProjectId: string, rawSlug: string, signal?: AbortSignal, limits?: LimitsChange): Promise<EnsureOutcome> {
    const projectId = validProjectId(rawProjectId);
    const requestedSlug = rawSlug === "" ? undefined : validSlug(projectId, rawSlug);
    if (isLimitsChange(limits)) checkLimitsChange(limits);
    // The record is read inside the lock: a replica that created it a moment ago is seen, and its password kept.
    return this.coordination.withLock("project", projectId, async () => {
      let record = await this.deps.store.getDatabase(projectId);
      let created = false;
      if (record && requestedSlug && requestedSlug !== record.slug) {
        throw new DomainError(
          "failed_precondition",
          `project ${projectId} already has database "${record.slug}"; a database's slug cannot change`,
        );
      }
      // A deleted database lives nowhere: a new one may be made on this runtime.
      if (record && record.state !== "deleted") this.assertOwnRuntime(record);
      // A delete cut short is finished before a new database takes its place.
      if (record?.state === "deleting") record = await this.finishDelete(record);
      if (!record) {
        const fromBucket = await this.fromBucket(projectId, requestedSlug, signal);
        if (fromBucket.kind === "recovered") record = await this.recordReady(fromBucket.record, fromBucket.result, fromBucket.password);
        else if (fromBucket.kind === "deleted") record = fromBucket.record;
        else record = await this.create(projectId, requestedSlug ?? slugForProject(projectId));
        // A deleted one is made new just below.
        created = true;
      }
      if (record.state === "deleted") {
        record = await this.recreate(record);
        created = true;
      }
      if (isLimitsChange(limits)) record = await this.storeLimits(record, limits);
      const database = await this.provision(record, signal);
      // Its recovery window starts with its first base backup: taken now, without keeping the deploy waiting.
      if (created) this.deps.backups?.baseBackupSoon(target(database));
      await this.quotas.check(database);
      return { database, created };
    });
  }

  /** What object storage holds for a project this service has no record of (nothing, without a bucket). */
  private fromBucket(projectId: string, requestedSlug: string | undefined, signal?: AbortSignal): Promise<FromBucket> {
    const recovery = this.deps.recovery;
    if (!recovery) return Promise.resolve({ kind: "none" });
    return ensureFromBucket({ ...this.deps, recovery }, projectId, requestedSlug, signal);
  }

  /**
   * Changes the project's limits override and applies it: through an ensure
   * of the running database (the runtime changes its limits in place where it
   * can), or at its next ensure when it is not ready.
   */
  async updateLimits(rawProjectId: string, limits: LimitsChange | undefined): Promise<DatabaseRecord> {
    const projectId = validProjectId(rawProjectId);
    if (!isLimitsChange(limits)) throw new DomainError("invalid_argument", "limits must set at least one field");
    checkLimitsChange(limits);
    return this.coordination.withLock("project", projectId, async () => {
      const record = await this.deps.store.getDatabase(projectId);
      if (!record) throw new DomainError("not_found", `project ${projectId} has no database; call Ensure first`);
      const updated = await this.storeLimits(record, limits);
      if (updated.state !== "ready" || updated.runtime !== this.deps.runtime.kind) return updated;
      return this.provision(updated);
    });
  }

  /** The limits in effect, where the runtime runs the database and can say; undefined otherwise. */
  async limitsStatus(database: DatabaseRecord): Promise<LimitsStatus | undefined> {
    if (!this.deps.runtime.limitsStatus || database.runtime !== this.deps.runtime.kind) return undefined;
    try {
      return await this.deps.runtime.limitsStatus(target(database));
    } catch {
      // Not running here (yet): the stored override is what GetDatabase shows.
      return undefined;
    }
  }

  /** The database's size against its quota, measured now (and reported when over); undefined without a quota. */
  sizeQuota(database: DatabaseRecord, knownSizeBytes?: number): Promise<SizeQuotaReport | undefined> {
    return this.quotas.check(database, knownSizeBytes);
  }

  private async storeLimits(record: DatabaseRecord, change: LimitsChange): Promise<DatabaseRecord> {
    const limits = applyLimitsChange(record.limits, change);
    const updated = await this.deps.store.updateDatabase(record.projectId, { limits });
    this.deps.logger.info({ projectId: record.projectId, slug: record.slug, limits }, "database limits override changed");
    return updated;
  }

  async get(rawProjectId: string): Promise<DatabaseRecord> {
    const projectId = validProjectId(rawProjectId);
    const record = await this.deps.store.getDatabase(projectId);
    if (!record) throw new DomainError("not_found", `project ${projectId} has no database; call Ensure first`);
    return record;
  }

  /** The record and its live figures (GetDatabase): a database that cannot answer is described all the same. */
  async describe(rawProjectId: string): Promise<{ database: DatabaseRecord } & FiguresOutcome> {
    const database = await this.get(rawProjectId);
    return { database, ...(await figuresOf(this.deps.runtime, database, this.deps.logger)) };
  }

  /** Figures of every database this runtime hosts (the /metrics scrape). */
  async figuresOfAll(): Promise<Array<{ readonly projectId: string } & FiguresOutcome>> {
    const databases = (await this.deps.store.listDatabases()).filter((record) => record.runtime === this.deps.runtime.kind);
    return figuresOfEach(this.deps.runtime, databases, this.deps.logger);
  }

  /** The DATABASE_URL: the only way a password leaves the service. */
  async connection(rawProjectId: string): Promise<{ url: string; sessionUrl: string; database: DatabaseRecord }> {
    const database = await this.get(rawProjectId);
    if (database.state !== "ready" || !database.sealedUrl) {
      throw new DomainError("failed_precondition", `database "${database.slug}" is ${database.state}, not ready; call Ensure`);
    }
    const url = this.open(database.sealedUrl, database.projectId);
    return { url, sessionUrl: sessionUrl(url, database.slug), database };
  }

  /** A sealed value that fails to open is reported, never returned as garbage or left to crash a call. */
  private open(sealed: string, projectId: string): string {
    try {
      return this.deps.sealer.open(sealed, projectId);
    } catch (error) {
      if (!(error instanceof SealError)) throw error;
      this.deps.logger.error({ projectId, err: loggableError(error) }, "sealed secret did not open");
      throw new DomainError("data_loss", `the stored connection secret of project ${projectId} cannot be opened: ${error.message}`);
    }
  }

  /**
   * Deletes the project's database: a final backup first (nothing is removed
   * unless it succeeded, or `skipFinalBackup`), then everything the runtime
   * had for it. The record stays, state "deleted", so the backups stay
   * listed and downloadable and the slug stays the project's; the next
   * Ensure makes a new database. Idempotent; a delete cut short (state
   * "deleting") is finished by the next delete, Ensure or start.
   */
  async delete(rawProjectId: string, options: { skipFinalBackup: boolean }): Promise<{ database: DatabaseRecord; finalBackup?: BackupRecord }> {
    const projectId = validProjectId(rawProjectId);
    return this.coordination.withLock("project", projectId, async () => {
      let record = await this.get(projectId);
      if (record.state === "deleted") return { database: record, ...(await this.finalBackupOf(record)) };
      this.assertOwnRuntime(record);
      let finalBackup: BackupRecord | undefined;
      if (record.state === "deleting") {
        finalBackup = (await this.finalBackupOf(record)).finalBackup;
      } else if (options.skipFinalBackup) {
        this.deps.logger.warn({ projectId, slug: record.slug }, "deleting the database WITHOUT a final backup (skip_final_backup)");
      } else {
        finalBackup = await this.takeFinalBackup(record);
      }
      // Recorded before anything is removed: whatever cuts the removal short, the next call or start finishes it.
      record = await this.deps.store.updateDatabase(projectId, { state: "deleting", error: null });
      const database = await this.finishDelete(record);
      return { database, ...(finalBackup ? { finalBackup } : {}) };
    });
  }

  /**
   * A new 32-hex password for the app role, applied by the runtime (the
   * role's verifier and PgBouncer's userlist, reloaded: open connections
   * stay), and the new DATABASE_URL sealed in place of the old one. The
   * store is written first: should the runtime fail half way, the database
   * is reported failed and the next Ensure applies the recorded password,
   * never the old one back.
   */
  async rotate(rawProjectId: string, options: { graceSeconds?: number } = {}): Promise<{ url: string; database: DatabaseRecord }> {
    const projectId = validProjectId(rawProjectId);
    const grace = options.graceSeconds ?? 0;
    if (!Number.isInteger(grace) || grace < 0) throw new DomainError("invalid_argument", "grace_seconds must be 0 or more");
    if (grace > 0) {
      throw new DomainError(
        "unimplemented",
        "grace_seconds is not supported: PostgreSQL keeps one password per role and PgBouncer one per user, so the old password stops working when the call returns; rotate between deploys, or deploy the new DATABASE_URL right after",
      );
    }
    return this.coordination.withLock("project", projectId, async () => {
      const record = await this.readyDatabase(projectId);
      this.assertOwnRuntime(record);
      if (record.host === null || record.port === null) {
        throw new DomainError("failed_precondition", `database "${record.slug}" has no endpoint yet; call Ensure`);
      }
      const password = newPassword();
      const url = databaseUrl({ slug: record.slug, password, host: record.host, port: record.port });
      const rotated = await this.deps.store.updateDatabase(projectId, {
        sealedPassword: this.deps.sealer.seal(password, projectId),
        sealedUrl: this.deps.sealer.seal(url, projectId),
      });
      const database = await this.provision(rotated);
      this.deps.logger.info({ projectId, slug: record.slug }, "credentials rotated");
      return { url: this.open(database.sealedUrl!, projectId), database };
    });
  }

  /** Brings every known database back after a restart, a few at a time, and finishes deletes cut short. */
  async resume(concurrency = 4): Promise<void> {
    const queue = (await this.deps.store.listDatabases()).filter(
      (record) => record.runtime === this.deps.runtime.kind && record.state !== "deleted",
    );
    const worker = async (): Promise<void> => {
      for (let record = queue.shift(); record; record = queue.shift()) {
        const target = record;
        await this.coordination
          .withLock("project", target.projectId, async () => {
            const current = (await this.deps.store.getDatabase(target.projectId)) ?? target;
            if (current.state === "deleted") return;
            if (current.state === "deleting") await this.finishDelete(current);
            else await this.provision(current);
          })
          .catch((error: unknown) =>
            this.deps.logger.error({ projectId: target.projectId, slug: target.slug, err: loggableError(error) }, "database did not come back"),
          );
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }

  /** `byTenant`: the caller holds a project token, so the project's manual-backup limit applies. */
  async createBackup(rawProjectId: string, wait: boolean, options: { byTenant?: boolean } = {}): Promise<BackupRecord> {
    const database = await this.readyDatabase(rawProjectId);
    return this.backups().create(target(database), "manual", { wait, ...options });
  }

  async listBackups(rawProjectId: string): Promise<ListedBackup[]> {
    const database = await this.get(rawProjectId);
    return this.backups().list(database.projectId);
  }

  /**
   * Without a target time: the dump named, as it is. With one: the database
   * as it was at that second, from the base backup named or, with "" or "-",
   * the newest that reaches it; a database reported failed (its data lost)
   * too, which comes back ready.
   */
  async restoreBackup(
    rawProjectId: string,
    rawBackupId: string,
    options: { byTenant?: boolean; targetTime?: Date } = {},
  ): Promise<{ restored: BackupRecord; safety?: BackupRecord; targetTime?: Date }> {
    const { targetTime, byTenant } = options;
    if (targetTime === undefined) {
      const database = await this.readyDatabase(rawProjectId);
      const backupId = validBackupId(rawBackupId);
      return this.coordination.withLock("project", database.projectId, () => this.backups().restore(target(database), backupId, { byTenant }));
    }
    const projectId = validProjectId(rawProjectId);
    const backupId = rawBackupId === "" || rawBackupId === "-" ? undefined : validBackupId(rawBackupId);
    return this.coordination.withLock("project", projectId, async (): Promise<PointInTimeOutcome> => {
      // Read inside the lock: a delete or a rotation may have come first.
      const database = await this.get(projectId);
      if (database.state !== "ready" && database.state !== "failed") {
        throw new DomainError("failed_precondition", `database "${database.slug}" is ${database.state}; only a ready or failed database can be restored`);
      }
      this.assertOwnRuntime(database);
      const spec = this.specOf(database);
      const outcome = await this.backups().restoreToTime(spec, backupId, targetTime, { byTenant });
      // Same endpoint; a failed database (its data lost) is ready again.
      await this.recordReady(database, outcome.result, spec.password);
      return outcome;
    });
  }

  /** The seconds the database can be restored to; undefined without one, or when it cannot be read now (logged). */
  async recoveryWindow(database: DatabaseRecord): Promise<RecoveryWindowView | undefined> {
    if (!this.deps.backups) return undefined;
    try {
      return await this.deps.backups.recoveryWindow(database);
    } catch (error) {
      this.deps.logger.warn({ projectId: database.projectId, err: loggableError(error) }, "could not read the recovery window");
      return undefined;
    }
  }

  /**
   * A new database for `rawProjectId` made from another project's data as of
   * `targetTime` (absent: now), with its own slug, role, password and URL.
   * The project must have no database, or a deleted one. Everything that can
   * be refused is refused before anything is recorded; a clone that fails
   * later leaves nothing: the runtime's remains are removed and the record
   * with them (a deleted one goes back to deleted).
   */
  async clone(
    rawProjectId: string,
    rawSourceProjectId: string,
    options: { targetTime?: Date; slug?: string } = {},
    signal?: AbortSignal,
  ): Promise<DatabaseRecord> {
    const projectId = validProjectId(rawProjectId);
    const sourceId = normalizeProjectId(rawSourceProjectId);
    if (!sourceId) throw new DomainError("invalid_argument", "source_project_id must be a UUID such as 550e8400-e29b-41d4-a716-446655440000");
    if (sourceId === projectId) {
      throw new DomainError("invalid_argument", "a database cannot be cloned into its own project: restore it to a point in time with RestoreBackup target_time");
    }
    const requestedSlug = options.slug ? validSlug(projectId, options.slug) : undefined;
    const backups = this.backups();
    // Both projects, in a fixed order: two clones of each other cannot wait on each other.
    const [first, second] = [projectId, sourceId].sort() as [string, string];
    return this.coordination.withLock("project", first, () =>
      this.coordination.withLock("project", second, async () => {
        const existing = await this.deps.store.getDatabase(projectId);
        if (existing && existing.state !== "deleted") {
          throw new DomainError("already_exists", `project ${projectId} already has database "${existing.slug}" (${existing.state}); clone into a project without one`);
        }
        if (existing && requestedSlug && requestedSlug !== existing.slug) {
          throw new DomainError("failed_precondition", `project ${projectId} already has database "${existing.slug}"; a database's slug cannot change`);
        }
        const slug = existing?.slug ?? requestedSlug ?? slugForProject(projectId);
        const owner = await this.deps.store.getDatabaseBySlug(slug);
        if (owner && owner.projectId !== projectId) throw slugTaken(slug);
        const source = await this.readyDatabase(sourceId);
        this.assertOwnRuntime(source);
        const plan = await backups.planClone(source, options.targetTime);

        const record = existing ? await this.recreate(existing) : await this.create(projectId, slug);
        const password = this.open(record.sealedPassword, projectId);
        let database: DatabaseRecord;
        try {
          const result = await backups.clone(this.specOf(record, password), plan, signal);
          database = await this.recordReady(record, result, password);
        } catch (error) {
          await this.undoClone(record, existing);
          const problem = error instanceof DomainError ? error.message : "clone failed; see the service log";
          throw new DomainError(kindOf(error), `${problem}; nothing was created`);
        }
        this.deps.logger.info(
          { projectId, slug, sourceProjectId: sourceId, ...(options.targetTime ? { targetTime: options.targetTime.toISOString() } : {}) },
          "database cloned",
        );
        backups.baseBackupSoon(target(database));
        return database;
      }),
    );
  }

  /** What a failed clone leaves: nothing on the host, no record (or the deleted one it replaced, deleted again). */
  private async undoClone(record: DatabaseRecord, replaced: DatabaseRecord | undefined): Promise<void> {
    const { projectId, slug } = record;
    try {
      await this.deps.runtime.remove(target(record), { keepData: false });
      if (replaced) await this.deps.store.updateDatabase(projectId, { state: "deleted", sealedPassword: "", ...NOTHING_RUNNING, createdAt: replaced.createdAt });
      else await this.deps.store.deleteDatabase(projectId);
    } catch (error) {
      // Left "provisioning": the next Ensure of the project finishes it as an empty database, never the source's data half made.
      this.deps.logger.error({ projectId, slug, err: loggableError(error) }, "could not remove what a failed clone left");
    }
  }

  async verifyBackup(rawProjectId: string, rawBackupId: string): Promise<BackupRecord> {
    const database = await this.readyDatabase(rawProjectId);
    return this.backups().verify(target(database), validBackupId(rawBackupId));
  }

  async downloadBackup(rawProjectId: string, rawBackupId: string) {
    // The id is checked before anything is looked up: nothing that could name another file goes further.
    const backupId = validBackupId(rawBackupId);
    const database = await this.get(rawProjectId);
    return this.backups().download(database.projectId, backupId);
  }

  private async create(projectId: string, slug: string): Promise<DatabaseRecord> {
    const password = newPassword();
    const now = this.now();
    const record = newDatabaseRecord(
      { projectId, slug, runtime: this.deps.runtime.kind, sealedPassword: this.deps.sealer.seal(password, projectId) },
      now,
    );
    // A slug another project owns: the store's SlugTakenError (already_exists) says so.
    await this.deps.store.insertDatabase(record);
    this.deps.logger.info({ projectId, slug }, "database recorded");
    return record;
  }

  /** A deleted database's record made new: a new password, nothing of the old endpoint, created now. */
  private async recreate(record: DatabaseRecord): Promise<DatabaseRecord> {
    const password = newPassword();
    const fresh = newDatabaseRecord(
      { projectId: record.projectId, slug: record.slug, runtime: this.deps.runtime.kind, sealedPassword: this.deps.sealer.seal(password, record.projectId) },
      this.now(),
    );
    const { projectId: _projectId, slug: _slug, updatedAt: _updatedAt, ...patch } = fresh;
    const updated = await this.deps.store.updateDatabase(record.projectId, patch);
    this.deps.logger.info({ projectId: record.projectId, slug: record.slug }, "database recorded again after a delete");
    return updated;
  }

  /** Takes the final backup; anything but a succeeded one stops the delete with nothing removed. */
  private async takeFinalBackup(record: DatabaseRecord): Promise<BackupRecord> {
    const backups = this.backups();
    let backup = await backups.create(target(record), "final", { wait: true });
    // A backup of another kind was running and was joined: the final one is taken after it.
    if (backup.kind !== "final") backup = await backups.create(target(record), "final", { wait: true });
    if (backup.state !== "succeeded") {
      throw new DomainError(
        "failed_precondition",
        `the final backup of database "${record.slug}" failed (${backup.error ?? "unknown reason"}); nothing was deleted: retry, or delete with skip_final_backup`,
      );
    }
    return backup;
  }

  /** The final backup this database's life ended with, if one was taken. */
  private async finalBackupOf(record: DatabaseRecord): Promise<{ finalBackup?: BackupRecord }> {
    if (!this.deps.backups) return {};
    const finalBackup = (await this.deps.backups.list(record.projectId)).find(
      (backup) => backup.kind === "final" && backup.state === "succeeded" && backup.startedAt >= record.createdAt,
    );
    return finalBackup ? { finalBackup } : {};
  }

  /** Removes everything the runtime has for the database, then records it deleted with no secret kept. */
  private async finishDelete(record: DatabaseRecord): Promise<DatabaseRecord> {
    this.deps.logger.info({ projectId: record.projectId, slug: record.slug }, "removing the database from the host");
    // Under the dump lock: a base backup running in the background finishes first, rather than fail (and alert) mid-removal.
    await this.coordination.withLock("dump", record.projectId, () => this.deps.runtime.remove(target(record), { keepData: false }));
    // No secret is kept: a deleted database's password and URL open nothing any more.
    const deleted = await this.deps.store.updateDatabase(record.projectId, { state: "deleted", sealedPassword: "", ...NOTHING_RUNNING });
    // It takes no more backups: its last-success gauge would only grow old and alert.
    this.deps.metrics.backupLastSuccess.remove({ project_id: record.projectId });
    this.deps.logger.info({ projectId: record.projectId, slug: record.slug }, "database deleted");
    return deleted;
  }

  private assertOwnRuntime(record: DatabaseRecord): void {
    if (record.runtime !== this.deps.runtime.kind) {
      throw new DomainError(
        "failed_precondition",
        `database "${record.slug}" lives on the ${record.runtime} runtime, but this service runs the ${this.deps.runtime.kind} runtime`,
      );
    }
  }

  /** What the runtime needs to make the database as recorded; the password opened from the record unless given. */
  private specOf(record: DatabaseRecord, password = this.open(record.sealedPassword, record.projectId)): DatabaseSpec {
    const limits = runtimeLimits(record.limits);
    return { projectId: record.projectId, slug: record.slug, password, ...(limits ? { limits } : {}) };
  }

  private async provision(record: DatabaseRecord, signal?: AbortSignal): Promise<DatabaseRecord> {
    // Once it has served (its URL was handed out), its data must be there:
    // a lost data directory is reported, never replaced by an empty one.
    const spec = { ...this.specOf(record), mustExist: record.sealedUrl !== null };
    const password = spec.password;
    const started = performance.now();
    let result: EnsureResult;
    try {
      result = await this.deps.runtime.ensure(spec, signal);
    } catch (error) {
      this.observeEnsure(started, "error");
      const problem = ensureProblem(error);
      // A database that was ready stays so through a passing failure, but not
      // once another process holds its pooler port (its URL leads there) or
      // its data is gone (until a restore brings it back).
      const portLost = this.deps.runtime.lostPoolerPorts?.().some((lost) => lost.slug === record.slug) ?? false;
      const state = record.state === "ready" && !portLost && problem.kind !== "data_loss" ? "ready" : "failed";
      await this.deps.store.updateDatabase(record.projectId, { state, error: problem.message });
      this.deps.logger.error({ projectId: record.projectId, slug: record.slug, err: loggableError(error) }, "ensure failed");
      throw problem;
    }
    this.observeEnsure(started, "ok");
    return this.recordReady(record, result, password);
  }

  private async recordReady(record: DatabaseRecord, result: EnsureResult, password: string): Promise<DatabaseRecord> {
    const { endpoint } = result;
    const unchanged =
      record.state === "ready" &&
      record.sealedUrl !== null &&
      record.host === endpoint.host &&
      record.port === endpoint.port &&
      record.network === (endpoint.network ?? null) &&
      record.postgresVersion === result.postgresVersion &&
      JSON.stringify(record.pooler) === JSON.stringify(result.pooler) &&
      !this.deps.sealer.isStale(record.sealedUrl) &&
      !this.deps.sealer.isStale(record.sealedPassword);
    // The deploy engine calls Ensure on every deploy: skip the durable write when nothing moved.
    if (unchanged) return record;
    const url = databaseUrl({ slug: record.slug, password, host: endpoint.host, port: endpoint.port });
    const updated = await this.deps.store.updateDatabase(record.projectId, {
      state: "ready",
      error: null,
      sealedUrl: this.deps.sealer.seal(url, record.projectId),
      sealedPassword: this.deps.sealer.isStale(record.sealedPassword)
        ? this.deps.sealer.seal(password, record.projectId)
        : record.sealedPassword,
      host: endpoint.host,
      port: endpoint.port,
      network: endpoint.network ?? null,
      postgresVersion: result.postgresVersion,
      pooler: result.pooler,
    });
    if (record.state !== "ready") this.deps.logger.info({ projectId: record.projectId, slug: record.slug }, "database ready");
    return updated;
  }

  private async readyDatabase(rawProjectId: string): Promise<DatabaseRecord> {
    const database = await this.get(rawProjectId);
    if (database.state !== "ready") {
      throw new DomainError("failed_precondition", `database "${database.slug}" is ${database.state}, not ready; call Ensure`);
    }
    return database;
  }

  private backups(): Backups {
    if (!this.deps.backups) throw new DomainError("unimplemented", "backups are not enabled on this server");
    return this.deps.backups;
  }

  private observeEnsure(started: number, outcome: string): void {
    this.deps.metrics.ensureDuration.observe({ runtime: this.deps.runtime.kind, outcome }, (performance.now() - started) / 1000);
  }
}

/** 16 bytes from the CSPRNG, hex: the 32 hex characters the product spec gives app passwords. */
function newPassword(): string {
  return randomBytes(16).toString("hex");
}

function target(database: DatabaseRecord): RuntimeTarget {
  return { projectId: database.projectId, slug: database.slug };
}

function validProjectId(raw: string): string {
  const projectId = normalizeProjectId(raw);
  if (!projectId) throw new DomainError("invalid_argument", "project_id must be a UUID such as 550e8400-e29b-41d4-a716-446655440000");
  return projectId;
}

function validSlug(projectId: string, raw: string): string {
  const problem = slugProblemFor(projectId, raw);
  if (problem) throw new DomainError("invalid_argument", problem);
  return raw;
}

function validBackupId(raw: string): string {
  if (!isBackupId(raw)) throw new DomainError("invalid_argument", "backup_id is not a backup id");
  return raw;
}

/** Runtime failures keep their kind and their message (safe by contract); anything else is said without detail. */
function ensureProblem(error: unknown): DomainError {
  if (error instanceof DomainError) return error;
  return new DomainError("internal", "provisioning failed; see the service log");
}
