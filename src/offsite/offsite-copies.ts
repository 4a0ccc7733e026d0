// OffsiteCopies: keeps the bucket in step with what this host keeps. A pass
// runs every SOTA_BACKUP_S3_SYNC_SECONDS (and right after a backup succeeds),
// on the replica that leads the schedule only, and:
//   1. deletes the objects of backups retention removed (rows whose backup is gone);
//   2. copies every succeeded backup not copied yet, newest first; a failed
//      copy is recorded, counted, logged at error level and retried with
//      exponential backoff (one sync interval, doubling, at most an hour);
//   3. copies each database's new complete WAL segments and history files,
//      and the segment still being written when WAL reached it since its last
//      copy (so the off-host RPO is about one sync interval);
//   4. drops WAL objects no kept base backup needs, and everything of a
//      project the state has forgotten;
//   5. rewrites the manifest of every project whose content changed: its
//      backups, its WAL generations, or its database (deleted, rotated...).
// Every deletion is decided from the state's own records, never from a
// listing of the bucket: a fresh host pointed at the bucket (disaster
// recovery) finds it untouched.
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { lstat, mkdir, open, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, Writable, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { DomainError } from "../errors.js";
import { loggableError, type Logger } from "../log.js";
import type { Runtime, RuntimeTarget, WalGeneration } from "../runtime/runtime.js";
import type { Keyring } from "../secrets/keyring.js";
import { newOffsiteCopyRecord, type BackupRecord, type DatabaseRecord, type OffsiteCopyRecord, type OffsiteWalRecord } from "../store/records.js";
import type { Store } from "../store/store.js";
import { ContentCheck, type Fingerprint } from "./content-check.js";
import { buildManifest, writeManifest } from "./manifest.js";
import { isWalFileName, ObjectLayout, PARTIAL_SUFFIX, UnsafeObjectName, type ObjectRef } from "./object-layout.js";
import type { ObjectStore } from "./object-store.js";
import { downloadDecrypted, uploadEncrypted, type TransferContext } from "./object-transfer.js";
import type { OffsiteMetrics } from "./offsite-metrics.js";
import type { ListedBackup, OffsiteCopyView } from "./offsite-view.js";
import { saveWhole } from "./local-copy.js";
import { TrailingZeros } from "./trailing-zeros.js";
import { walObjectsToDrop } from "./wal-retention.js";

/** What the backup layer calls: after a backup succeeds, after retention, when listing, before a restore. */
export interface OffsiteHooks {
  backupSucceeded(record: BackupRecord): void;
  backupsDeleted(projectId: string, records: readonly BackupRecord[]): Promise<void>;
  describe(projectId: string, records: readonly BackupRecord[]): Promise<ListedBackup[]>;
  /** Makes `path` hold the backup's recorded bytes again from its off-host copy when it is missing or damaged; otherwise leaves it. */
  ensureLocalCopy(record: BackupRecord, path: string): Promise<void>;
}

export interface OffsiteCopiesOptions {
  readonly objects: ObjectStore;
  readonly prefix: string;
  readonly keyring: Keyring;
  readonly store: Store;
  /** Which databases are its own (kind), and their WAL archives (pitr). */
  readonly runtime: Pick<Runtime, "kind" | "pitr">;
  readonly metrics: OffsiteMetrics;
  readonly logger: Logger;
  /** The file of a succeeded backup on this host. */
  readonly localFile: (record: BackupRecord) => string;
  /** Private scratch space (WAL snapshots, downloads) on the backup directory's file system. */
  readonly tempDir: string;
  /** How often a pass runs; also the first retry's delay. */
  readonly syncIntervalMs: number;
  /** Only the leader copies (several replicas share one state and one bucket); default: always. */
  readonly isLeader?: () => boolean;
  readonly now?: () => Date;
}

const MAX_BACKOFF_MS = 60 * 60 * 1000;
const FIRST_PASS_DELAY_MS = 1_000;

export class OffsiteCopies implements OffsiteHooks {
  readonly layout: ObjectLayout;
  private readonly transfer: TransferContext;
  private readonly now: () => Date;
  private readonly logger: Logger;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private started = false;
  private closed = false;
  /** Projects whose manifest must be written again. */
  private readonly dirty = new Set<string>();
  /** Per project: its database as the manifest last written says it (see databaseFingerprint). */
  private readonly written = new Map<string, string>();
  /** Per project: failed WAL copies in a row, and when to try again. */
  private readonly walBackoff = new Map<string, { failures: number; retryAt: number }>();
  /** WAL file names refused once (a tenant's server wrote them): logged once, not at every pass. */
  private readonly refusedNames = new Set<string>();

  constructor(private readonly options: OffsiteCopiesOptions) {
    this.layout = new ObjectLayout(options.prefix);
    this.transfer = { objects: options.objects, keyring: options.keyring };
    this.now = options.now ?? (() => new Date());
    this.logger = options.logger;
  }

  /** Publishes the newest copy time (alerts must be right from the first scrape) and starts the passes. */
  async start(): Promise<void> {
    await this.removeStaleTempFiles();
    const copies = await this.options.store.listOffsiteCopies();
    const newest = Math.max(0, ...copies.map((copy) => copy.copiedAt?.getTime() ?? 0), ...(await this.options.store.listOffsiteWal()).map((wal) => wal.copiedAt.getTime()));
    if (newest > 0) this.options.metrics.copied(new Date(newest));
    // Every manifest once per start: a release that changed its content, or a write lost to a crash, is caught up.
    for (const copy of copies) this.dirty.add(copy.projectId);
    this.started = true;
    this.schedule(FIRST_PASS_DELAY_MS);
  }

  /** Aborts uploads in flight (nothing half-written stays in the bucket) and waits for the pass to end. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.abort.abort();
    await this.running?.catch(() => undefined);
  }

  backupSucceeded(record: BackupRecord): void {
    this.dirty.add(record.projectId);
    this.kick();
  }

  /** A whole pass that starts after this call, and its end (tests, and callers that must see the bucket in step). */
  async sync(): Promise<void> {
    while (this.running) await this.running;
    await this.kick();
  }

  /** Runs a pass now, or right after the one running. Resolves when the pass running now has ended. */
  kick(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    if (this.timer) clearTimeout(this.timer);
    this.running = this.pass()
      .catch((error: unknown) => this.logger.error({ err: loggableError(error) }, "off-host copy pass failed; the next one retries"))
      .finally(() => {
        this.running = undefined;
        if (this.closed) return;
        if (this.again) {
          this.again = false;
          void this.kick();
        } else {
          this.schedule(this.options.syncIntervalMs);
        }
      });
    return this.running;
  }

  private schedule(delayMs: number): void {
    if (this.closed || !this.started) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.kick(), delayMs);
  }

  async backupsDeleted(projectId: string, records: readonly BackupRecord[]): Promise<void> {
    if (records.length === 0) return;
    const copies = new Map((await this.options.store.listOffsiteCopies(projectId)).map((copy) => [copy.backupId, copy]));
    for (const record of records) await this.forgetBackup(projectId, record.id, this.backupRef(record).key, copies.get(record.id));
    this.dirty.add(projectId);
  }

  async describe(projectId: string, records: readonly BackupRecord[]): Promise<ListedBackup[]> {
    const copies = new Map((await this.options.store.listOffsiteCopies(projectId)).map((copy) => [copy.backupId, copy]));
    return records.map((record) => (record.state === "succeeded" ? { ...record, offsite: view(copies.get(record.id)) } : record));
  }

  /**
   * The backup's plaintext from the bucket, streamed, decrypted and checked
   * against the recorded sha256 and size: the stream errors with data_loss
   * (never ends quietly) when the object was changed or cut short.
   */
  async openBackup(record: BackupRecord): Promise<Readable> {
    const expected = fingerprintOf(record);
    if (!expected) throw new DomainError("failed_precondition", `backup ${record.id} has no recorded checksum`);
    try {
      return await downloadDecrypted(this.transfer, this.backupRef(record), expected);
    } catch (error) {
      throw this.downloadFailure(record, error);
    }
  }

  /** A refusal (data_loss, not_found) as it is; the bucket out of reach as unavailable, its detail in the log only. */
  private downloadFailure(record: BackupRecord, error: unknown): DomainError {
    if (error instanceof DomainError) return error;
    this.options.metrics.failures.inc({ kind: "download" });
    this.logger.error(
      { projectId: record.projectId, backupId: record.id, err: { name: errorName(error), message: failureReason(error) } },
      "could not read a backup's off-host copy",
    );
    return new DomainError("unavailable", `backup ${record.id}: its off-host copy could not be read from object storage; try again later`);
  }

  async ensureLocalCopy(record: BackupRecord, path: string): Promise<void> {
    const expected = fingerprintOf(record);
    if (!expected || (await localFileMatches(path, expected))) return;
    const copy = (await this.options.store.listOffsiteCopies(record.projectId)).find((candidate) => candidate.backupId === record.id);
    // Without a copy the caller's own check refuses the file, as without object storage.
    if (copy?.state !== "copied") return;
    const log = { projectId: record.projectId, backupId: record.id };
    this.logger.warn(log, "the backup's local file is missing or damaged: fetching its off-host copy");
    try {
      await saveWhole(await this.openBackup(record), await this.tempFile(), path);
      this.logger.info(log, "the backup's local file was restored from its off-host copy");
    } catch (error) {
      const failure = this.downloadFailure(record, error);
      if (failure === error) this.logger.error({ ...log, err: loggableError(error) }, "could not restore the backup's local file from its off-host copy");
      throw failure;
    }
  }

  /** One pass (see the top of this file). */
  private async pass(): Promise<void> {
    if (this.closed || !(this.options.isLeader?.() ?? true)) return;
    const { store } = this.options;
    const [succeeded, copies] = await Promise.all([store.listBackupsByState("succeeded"), store.listOffsiteCopies()]);
    const known = new Set(succeeded.map((record) => record.id));
    for (const copy of copies) {
      if (!known.has(copy.backupId) && copy.objectKey) await this.forgetBackup(copy.projectId, copy.backupId, copy.objectKey, copy);
      else if (!known.has(copy.backupId)) await store.deleteOffsiteCopy(copy.backupId);
    }
    const byId = new Map(copies.map((copy) => [copy.backupId, copy]));
    let pending = 0;
    for (const record of [...succeeded].reverse()) {
      const copy = byId.get(record.id);
      if (copy?.state === "copied") continue;
      pending++;
      if (this.closed) continue;
      if (copy?.nextAttemptAt && copy.nextAttemptAt.getTime() > this.now().getTime()) continue;
      if (await this.copyBackup(record, copy)) pending--;
    }
    pending += await this.syncWalOfAll();
    await this.pruneBucket(succeeded);
    await this.noteDatabaseChanges(copies);
    await this.writeManifests();
    this.options.metrics.pending.set(pending);
  }

  /** Copies one backup; records and reports the outcome. Resolves whether it is copied. */
  private async copyBackup(record: BackupRecord, previous: OffsiteCopyRecord | undefined): Promise<boolean> {
    const attempts = (previous?.attempts ?? 0) + 1;
    const log = { projectId: record.projectId, backupId: record.id, attempts };
    const base: OffsiteCopyRecord = previous ?? newOffsiteCopyRecord(record.id, record.projectId);
    try {
      const expected = fingerprintOf(record);
      if (!expected) throw new DomainError("failed_precondition", "the backup has no recorded checksum");
      const ref = this.backupRef(record);
      const source = createReadStream(this.options.localFile(record));
      const bytes = await uploadEncrypted(this.transfer, ref, source, expected, { "sota-backup-id": record.id }, this.abort.signal);
      const copiedAt = this.now();
      await this.options.store.putOffsiteCopy({
        ...base,
        state: "copied",
        attempts,
        error: null,
        objectKey: ref.key,
        sha256: expected.sha256,
        sizeBytes: expected.sizeBytes,
        copiedAt,
        nextAttemptAt: null,
      });
      this.options.metrics.copied(copiedAt, bytes);
      this.dirty.add(record.projectId);
      this.logger.info({ ...log, key: ref.key, bytes }, "backup copied off-host");
      return true;
    } catch (error) {
      if (this.closed) return false;
      const reason = failureReason(error);
      const retryAt = new Date(this.now().getTime() + this.backoffMs(attempts));
      await this.options.store.putOffsiteCopy({ ...base, state: "failed", attempts, error: reason, nextAttemptAt: retryAt });
      this.options.metrics.failures.inc({ kind: "backup" });
      this.logger.error({ ...log, retryAt, err: { name: errorName(error), message: reason } }, "off-host copy of a backup failed; it is retried");
      return false;
    }
  }

  /** WAL of every database whose runtime archives it; resolves with the files still waiting. */
  private async syncWalOfAll(): Promise<number> {
    const pitr = this.options.runtime.pitr;
    if (!pitr) return 0;
    const databases = (await this.options.store.listDatabases()).filter(
      (database) => database.runtime === this.options.runtime.kind && database.state === "ready",
    );
    let pending = 0;
    for (const database of databases) {
      if (this.closed) break;
      const backoff = this.walBackoff.get(database.projectId);
      if (backoff && backoff.retryAt > this.now().getTime()) continue;
      const target = { projectId: database.projectId, slug: database.slug };
      try {
        pending += await this.syncWal(target);
        this.walBackoff.delete(database.projectId);
      } catch (error) {
        if (this.closed) break;
        const failures = (backoff?.failures ?? 0) + 1;
        const retryAt = this.now().getTime() + this.backoffMs(failures);
        this.walBackoff.set(database.projectId, { failures, retryAt });
        pending++;
        this.options.metrics.failures.inc({ kind: "wal" });
        this.logger.error(
          { projectId: database.projectId, failures, retryAt: new Date(retryAt), err: { name: errorName(error), message: failureReason(error) } },
          "off-host copy of WAL failed; it is retried",
        );
      }
    }
    return pending;
  }

  /** Copies what is new in one database's archive, oldest first; stops at the first failure (it throws). */
  private async syncWal(target: RuntimeTarget): Promise<number> {
    const generations = await this.options.runtime.pitr!.walGenerations(target);
    const copied = new Map((await this.options.store.listOffsiteWal(target.projectId)).map((record) => [`${record.generation}/${record.file}`, record]));
    const knownGenerations = new Set([...copied.values()].map((record) => record.generation));
    for (const generation of generations) {
      for (const segment of generation.segments) {
        if (this.closed) return 0;
        if (!this.acceptable(target, generation, segment.name)) continue;
        if (segment.complete) {
          if (copied.has(`${generation.id}/${segment.name}`)) continue;
          await this.copyWalFile(target, generation, segment.name, segment.bytes, false);
          const partial = copied.get(`${generation.id}/${segment.name}${PARTIAL_SUFFIX}`);
          if (partial) await this.dropWal([partial]);
        } else {
          const previous = copied.get(`${generation.id}/${segment.name}${PARTIAL_SUFFIX}`);
          if (!generation.lastReceivedAt || (previous && previous.copiedAt.getTime() >= generation.lastReceivedAt.getTime())) continue;
          await this.copyWalFile(target, generation, segment.name, segment.bytes, true);
        }
        if (!knownGenerations.has(generation.id)) {
          knownGenerations.add(generation.id);
          this.dirty.add(target.projectId);
        }
      }
    }
    return 0;
  }

  /** A WAL file name or generation id of the wrong shape (a tenant's server may write files there) is never copied. */
  private acceptable(target: RuntimeTarget, generation: WalGeneration, name: string): boolean {
    try {
      if (name.endsWith(PARTIAL_SUFFIX) || !isWalFileName(name)) throw new UnsafeObjectName("not a WAL segment or history file name");
      this.layout.wal(target.projectId, generation.id, name);
      return true;
    } catch (error) {
      if (!(error instanceof UnsafeObjectName)) throw error;
      const id = `${target.projectId}/${generation.id}/${name}`;
      if (!this.refusedNames.has(id)) {
        this.refusedNames.add(id);
        this.logger.warn({ projectId: target.projectId, reason: error.message }, "a file in the WAL archive has an unexpected name; it is not copied off-host");
      }
      return false;
    }
  }

  /**
   * Reads the file once into a private snapshot (the segment being written
   * changes under the reader; its trailing zero padding is left out), then
   * uploads the snapshot with its sha256.
   */
  private async copyWalFile(target: RuntimeTarget, generation: WalGeneration, name: string, segmentBytes: number, partial: boolean): Promise<void> {
    const file = partial ? `${name}${PARTIAL_SUFFIX}` : name;
    const ref = this.layout.wal(target.projectId, generation.id, file);
    const readAt = this.now();
    const temp = await this.tempFile();
    try {
      const check = new ContentCheck(undefined, () => new Error("unreachable"));
      const handle = await open(temp, "wx", 0o600);
      await pipeline(
        this.options.runtime.pitr!.readWal(target, generation.id, name),
        partial ? new TrailingZeros() : new PassThrough(),
        check,
        createWriteStream("", { fd: handle }),
      );
      const fingerprint = check.fingerprint;
      const bytes = await uploadEncrypted(
        this.transfer,
        ref,
        createReadStream(temp),
        fingerprint,
        { "sota-segment-bytes": String(segmentBytes) },
        this.abort.signal,
      );
      await this.options.store.putOffsiteWal({ projectId: target.projectId, generation: generation.id, file, ...fingerprint, copiedAt: readAt });
      this.options.metrics.copied(this.now(), bytes);
    } finally {
      await rm(temp, { force: true });
    }
  }

  /** Retention in the bucket: WAL no kept base backup needs, and every object of a project the state forgot. */
  private async pruneBucket(succeeded: readonly BackupRecord[]): Promise<void> {
    const wal = await this.options.store.listOffsiteWal();
    const projects = new Set(wal.map((record) => record.projectId));
    for (const projectId of projects) {
      if (this.closed) return;
      try {
        const database = await this.options.store.getDatabase(projectId);
        // Without a database, read again after it: records forgotten meanwhile (a disaster recovery undone) name nothing of ours to delete.
        const records = database ? wal.filter((record) => record.projectId === projectId) : await this.options.store.listOffsiteWal(projectId);
        if (!database && records.length === 0) continue;
        const drop = database ? walObjectsToDrop(succeeded.filter((backup) => backup.projectId === projectId), records) : records;
        if (drop.length > 0) {
          await this.dropWal(drop);
          this.dirty.add(projectId);
          this.logger.info({ projectId, files: drop.length }, database ? "WAL no kept base backup needs deleted off-host" : "off-host WAL of a forgotten database deleted");
        }
        if (!database) {
          await this.options.objects.delete([this.layout.manifest(projectId).key]);
          this.dirty.delete(projectId);
          this.written.delete(projectId);
        }
      } catch (error) {
        this.options.metrics.failures.inc({ kind: "delete" });
        this.logger.error({ projectId, err: { name: errorName(error), message: failureReason(error) } }, "off-host WAL retention failed; the next pass retries");
      }
    }
  }

  private async dropWal(records: readonly OffsiteWalRecord[]): Promise<void> {
    await this.options.objects.delete(records.map((record) => this.layout.wal(record.projectId, record.generation, record.file).key));
    for (const record of records) await this.options.store.deleteOffsiteWal(record.projectId, record.generation, record.file);
  }

  /** Deletes a backup's object, then its record; a failed delete leaves (or makes) the record, so the next pass retries. */
  private async forgetBackup(projectId: string, backupId: string, key: string, copy: OffsiteCopyRecord | undefined): Promise<void> {
    try {
      await this.options.objects.delete([key]);
      await this.options.store.deleteOffsiteCopy(backupId);
      this.dirty.add(projectId);
    } catch (error) {
      this.options.metrics.failures.inc({ kind: "delete" });
      this.logger.error({ projectId, backupId, err: { name: errorName(error), message: failureReason(error) } }, "could not delete an expired backup's off-host copy; the next pass retries");
      await this.options.store
        .putOffsiteCopy({
          backupId,
          projectId,
          state: "failed",
          attempts: copy?.attempts ?? 0,
          error: failureReason(error),
          objectKey: key,
          sha256: copy?.sha256 ?? null,
          sizeBytes: copy?.sizeBytes ?? null,
          copiedAt: copy?.copiedAt ?? null,
          nextAttemptAt: null,
        })
        .catch(() => undefined);
    }
  }

  /**
   * A manifest must follow its database, not only its backups: a delete, a
   * rotation or a new port changes what a disaster recovery would bring back
   * (a deleted database brought back alive, an old password under a new URL).
   */
  private async noteDatabaseChanges(copies: readonly OffsiteCopyRecord[]): Promise<void> {
    const inBucket = new Set([...copies.map((copy) => copy.projectId), ...this.written.keys()]);
    for (const database of await this.options.store.listDatabases()) {
      if (inBucket.has(database.projectId) && this.written.get(database.projectId) !== databaseFingerprint(database)) this.dirty.add(database.projectId);
    }
  }

  private async writeManifests(): Promise<void> {
    const { store } = this.options;
    for (const projectId of [...this.dirty]) {
      if (this.closed) return;
      this.dirty.delete(projectId);
      try {
        const [database, backups, copies, wal] = await Promise.all([
          store.getDatabase(projectId),
          store.listBackups(projectId),
          store.listOffsiteCopies(projectId),
          store.listOffsiteWal(projectId),
        ]);
        if (!database && copies.length === 0 && wal.length === 0) continue;
        await writeManifest(this.transfer, this.layout, buildManifest(projectId, database, backups, copies, wal, this.now()), this.abort.signal);
        if (database) this.written.set(projectId, databaseFingerprint(database));
        else this.written.delete(projectId);
      } catch (error) {
        if (this.closed) return;
        this.dirty.add(projectId);
        this.options.metrics.failures.inc({ kind: "manifest" });
        this.logger.error({ projectId, err: { name: errorName(error), message: failureReason(error) } }, "could not write a project's off-host manifest; the next pass retries");
      }
    }
  }

  private backupRef(record: BackupRecord): ObjectRef {
    return this.layout.backup(record.projectId, record.id, record.format);
  }

  private backoffMs(attempts: number): number {
    return Math.min(MAX_BACKOFF_MS, this.options.syncIntervalMs * 2 ** Math.min(attempts - 1, 20));
  }

  /** Snapshots and downloads a killed process left behind (a live one writes to its files, so they are never an hour old). */
  private async removeStaleTempFiles(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.options.tempDir);
    } catch {
      return;
    }
    const before = Date.now() - 60 * 60 * 1000;
    for (const name of names) {
      const path = join(this.options.tempDir, name);
      const stats = await lstat(path).catch(() => undefined);
      if (stats?.isFile() && stats.mtimeMs < before) await rm(path, { force: true }).catch(() => undefined);
    }
  }

  private async tempFile(): Promise<string> {
    await mkdir(this.options.tempDir, { recursive: true, mode: 0o700 });
    return join(this.options.tempDir, `${randomBytes(8).toString("hex")}.tmp`);
  }
}

/** What of a database its manifest records (see buildManifest), as one string to compare. */
function databaseFingerprint(database: DatabaseRecord): string {
  const { slug, state, runtime, sealedPassword, host, port, network, limits } = database;
  return JSON.stringify([slug, state, runtime, sealedPassword, host, port, network, limits ?? null]);
}

function view(copy: OffsiteCopyRecord | undefined): OffsiteCopyView {
  if (!copy) return { state: "pending", copiedAt: null, error: null, attempts: 0 };
  return { state: copy.state, copiedAt: copy.copiedAt, error: copy.error, attempts: copy.attempts };
}

function fingerprintOf(record: BackupRecord): Fingerprint | undefined {
  return record.sha256 && record.sizeBytes !== null ? { sha256: record.sha256, sizeBytes: record.sizeBytes } : undefined;
}

/** What a record and a log line may say about a failure: our own messages, or the storage error's scrubbed one. */
function failureReason(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    // A local file error names the host's path: the code says enough.
    if (typeof code === "string" && code.startsWith("E")) return `local file: ${code}`;
    return error.message.slice(0, 500);
  }
  return String(error).slice(0, 500);
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : "Error";
}

async function localFileMatches(path: string, expected: Fingerprint): Promise<boolean> {
  const check = new ContentCheck(expected, () => new Error("mismatch"));
  try {
    await pipeline(createReadStream(path), check, new Writable({ write: (_chunk, _encoding, done) => done() }));
    return true;
  } catch {
    return false;
  }
}
