// PointInTimeRecovery.recover in the process driver, under the project's lock.
//
// In place (the project's instance exists): its WAL receiver and PostgreSQL
// stop (PgBouncer keeps the port, so the endpoint stays), a new data
// directory is built beside the old one (see recovered-data-dir.ts) and
// replayed by a one-off server on a private socket (see replay-server.ts);
// once it has promoted and shut down cleanly, the old directory moves aside,
// the new one takes its place, a new WAL generation opens, and ensure brings
// the instance up as always (the spec's password, PgBouncer, the end-to-end
// check). Only then is the old directory deleted. Any failure undoes it all
// (see recovery-marker.ts) and starts the old server again if it ran.
//
// As new (a clone, or a database this host no longer has): the instance
// directory is made the way ensure makes one, with an OS user of its own,
// but with the recovered data instead of a copy of the template. A clone's
// recovered server holds the source's role app_{source} and database
// {source}: they are renamed to the clone's names once it has promoted, and
// ensure then sets the clone's password. Any failure removes it all.
import { lstat, mkdir, rename } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { DomainError } from "../../../errors.js";
import type { Logger } from "../../../log.js";
import { loggableError } from "../../../log.js";
import { RuntimeError, type DatabaseSpec, type EnsureResult, type RecoveryTarget } from "../../runtime.js";
import { effectiveLimits } from "../../shared/resource-limits.js";
import { checkSpec, checkTarget, slugTaken } from "../../shared/target-checks.js";
import { stopStalePostmaster } from "../children/stale-process.js";
import type { DriverParts } from "../driver-parts.js";
import { ensureInstance } from "../ensure-steps.js";
import type { RunAs } from "../host/os-user.js";
import { ensureDir, ownedBy, readChildFile, readIfExists, removeTree, SERVICE_ONLY, syncDir, writeServiceFile } from "../host/owned-files.js";
import { pathExists } from "../host/path-checks.js";
import { settleLayout } from "../instance/instance-layout.js";
import { instancePaths, type InstancePaths } from "../instance/instance-paths.js";
import { removeInstance } from "../remove-steps.js";
import { findArchive } from "./archive-lookup.js";
import { archivedWal, backupStartSegment, copyArchivedWal, extractBase, signalRecovery, streamedWal, type WalFiles } from "./recovered-data-dir.js";
import { finishRecovery, settleInterruptedRecovery, undoRecovery, writeRecoveryMarker, type RecoveryMarker } from "./recovery-marker.js";
import { replayAndPromote } from "./replay-server.js";
import { checkGenerationId, WalArchive } from "./wal-archive.js";

export interface RecoveredDatabase {
  readonly generation: string;
  readonly result: EnsureResult;
}

/** What one recovery works with, once checked. */
interface Job {
  readonly parts: DriverParts;
  readonly spec: DatabaseSpec;
  readonly paths: InstancePaths;
  readonly base: Readable;
  readonly recovery: RecoveryTarget;
  /** The generation's WAL: the source's archive here, or recovery.wal. */
  readonly wal: WalFiles;
  readonly signal: AbortSignal;
  readonly logger: Logger;
}

export async function recoverDatabase(
  parts: DriverParts,
  spec: DatabaseSpec,
  base: Readable,
  recovery: RecoveryTarget,
  callerSignal: AbortSignal | undefined,
): Promise<RecoveredDatabase> {
  checkSpec(spec);
  checkTarget(recovery.source);
  checkGenerationId(recovery.generation);
  if (recovery.time !== undefined && Number.isNaN(recovery.time.getTime())) throw new RuntimeError("failed", "the recovery's target time is not a valid time");
  if (recovery.source.slug === spec.slug && recovery.source.projectId !== spec.projectId) throw slugTaken(spec.slug);
  const signal = callerSignal ? AbortSignal.any([parts.closing, callerSignal]) : parts.closing;
  const paths = instancePaths(parts.dataDir, spec.slug);
  const logger = parts.logger.child({ slug: spec.slug });
  const owner = (await readIfExists(paths.projectMarker))?.trim();
  if (owner !== undefined && owner !== spec.projectId) throw slugTaken(spec.slug);
  // Nothing is touched before the source's archive is known to hold the generation.
  const wal = recovery.wal ? streamedWal(recovery.wal) : await localWal(parts, recovery);
  // A recovery an earlier run of the service left half done is undone first.
  await settleInterruptedRecovery(paths, parts.users, logger);
  const job: Job = { parts, spec, paths, base, recovery, wal, signal, logger };
  const started = Date.now();
  const recovered = (await pathExists(paths.dir)) ? await recoverInPlace(job) : await recoverAsNew(job);
  logger.info(
    { projectId: spec.projectId, source: recovery.source.slug, generation: recovered.generation, target: recovery.time?.toISOString() ?? "end of WAL", ms: Date.now() - started },
    "database recovered to a point in time",
  );
  return recovered;
}

async function recoverInPlace(job: Job): Promise<RecoveredDatabase> {
  const { parts, spec, paths, logger } = job;
  if ((await readIfExists(paths.projectMarker))?.trim() !== spec.projectId) {
    throw new RuntimeError("failed", `the directory of ${spec.slug} is not a complete database of this service; remove it or ensure it first`);
  }
  const runAs = await parts.users.recorded(paths.dir);
  if (runAs === undefined) throw new RuntimeError("failed", `the OS user of ${spec.slug} is gone; ensure it first`);
  const instance = parts.instances.get(spec.slug);
  const archive = instance?.wal.archive ?? new WalArchive(paths, runAs, spec.slug);
  const marker: RecoveryMarker = { kind: "in-place", previousGeneration: await archive.current(), phase: "recovering" };
  const wasRunning = instance?.postgres.running === true;
  const hadData = await isDirectory(paths.pgdata);
  let swapped = false;
  await writeRecoveryMarker(paths, marker);
  try {
    // The receiver first: it archives all it got before the server goes.
    await stopServer(job);
    await stopStalePostmaster(paths.pgdata, logger);
    await buildAndReplay(job, runAs);
    if (hadData) await rename(paths.pgdata, paths.pgdataBeforeRecovery);
    await rename(paths.pgdataRecovering, paths.pgdata);
    swapped = true;
    await syncDir(paths.dir);
    const generation = await archive.openGeneration();
    const result = await ensureInstance(parts, spec, job.signal, { recovering: true });
    await finishRecovery(paths, marker);
    return { generation, result };
  } catch (error) {
    await rollBackInPlace(job, marker, { wasRunning, hadData, swapped }).catch((rollbackError: unknown) =>
      logger.error({ err: loggableError(rollbackError) }, "undoing a failed recovery failed: the database may need an operator (see the recovery marker in its directory)"),
    );
    throw recoveryFailed(spec.slug, error, "and it was left as it was");
  }
}

async function rollBackInPlace(job: Job, marker: RecoveryMarker, state: { wasRunning: boolean; hadData: boolean; swapped: boolean }): Promise<void> {
  const { parts, spec, paths, logger } = job;
  await stopServer(job);
  await undoRecovery(paths, marker, parts.users, logger);
  // With no old data directory to put back, the half-made one goes too.
  if (state.swapped && !state.hadData) await removeTree(paths.pgdata);
  if (state.wasRunning && state.hadData) await ensureInstance(parts, spec, undefined);
}

async function recoverAsNew(job: Job): Promise<RecoveredDatabase> {
  const { parts, spec, paths } = job;
  // Not recursive: a directory made meanwhile is someone else's.
  await mkdir(paths.dir, { mode: 0o700 });
  const marker: RecoveryMarker = { kind: "new", phase: "recovering" };
  try {
    await writeRecoveryMarker(paths, marker);
    await writeServiceFile(paths.projectMarker, `${spec.projectId}\n`, SERVICE_ONLY);
    const runAs = await parts.users.assign(paths.dir);
    await settleLayout(paths, runAs);
    await buildAndReplay(job, runAs);
    await rename(paths.pgdataRecovering, paths.pgdata);
    await syncDir(paths.dir);
    const generation = await new WalArchive(paths, runAs, spec.slug).openGeneration();
    const result = await ensureInstance(parts, spec, job.signal, { recovering: true });
    await finishRecovery(paths, marker);
    return { generation, result };
  } catch (error) {
    await removeInstance(parts, spec, { keepData: false }).catch((removeError: unknown) =>
      job.logger.error({ err: loggableError(removeError) }, "removing the database a failed recovery was making failed"),
    );
    throw recoveryFailed(spec.slug, error, "and nothing was made");
  }
}

/** pgdata.recovering: the base unpacked, the generation's WAL copied in, replayed, promoted, shut down. */
async function buildAndReplay(job: Job, runAs: RunAs): Promise<void> {
  const { parts, spec, paths, recovery, signal } = job;
  const pgdata = paths.pgdataRecovering;
  await removeTree(pgdata);
  await ensureDir(pgdata, ownedBy(runAs));
  await extractBase(job.base, pgdata, runAs, signal);
  const major = parts.binaries.postgres.major;
  const version = (await readChildFile(join(pgdata, "PG_VERSION"), runAs))?.trim();
  if (version !== String(major)) {
    throw new RuntimeError("failed", version === undefined ? "the base backup holds no PostgreSQL data directory" : `the base backup is of PostgreSQL ${version} but this host runs PostgreSQL ${major}`);
  }
  const fromSegment = await backupStartSegment(pgdata, runAs);
  await copyArchivedWal(job.wal, join(pgdata, "pg_wal"), runAs, fromSegment, signal);
  await signalRecovery(pgdata, runAs);
  signal.throwIfAborted();
  // Replayed inside the database's limits, like its own server.
  const cgroup = parts.cgroups.instance(spec.slug);
  if (cgroup.enforced) await cgroup.apply(effectiveLimits(parts.defaultLimits, spec.limits));
  await replayAndPromote({
    slug: spec.slug,
    paths,
    pgdata,
    runAs,
    binaries: parts.binaries.postgres,
    logger: job.logger,
    time: recovery.time,
    renameFrom: recovery.source.slug,
    onSpawn: (pid) => cgroup.addProcess(pid),
    signal,
  });
}

/** The generation in the source's archive on this host, checked to be there. */
async function localWal(parts: DriverParts, recovery: RecoveryTarget): Promise<WalFiles> {
  const source = await findArchive(parts, recovery.source);
  if (source === undefined) throw new RuntimeError("failed", `database ${recovery.source.slug} has no WAL archive on this host`);
  if (!(await source.hasGeneration(recovery.generation))) {
    throw new RuntimeError("failed", `the WAL archive of ${recovery.source.slug} holds no generation ${recovery.generation}`);
  }
  return archivedWal(source, recovery.generation);
}

/** The instance's receiver and server, stopped; PgBouncer keeps running and holds the port. */
async function stopServer(job: Job): Promise<void> {
  const instance = job.parts.instances.get(job.spec.slug);
  if (instance === undefined) return;
  instance.healthy = false;
  await instance.wal.stop();
  await instance.postgres.stop();
}

async function isDirectory(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined))?.isDirectory() === true;
}

function recoveryFailed(slug: string, error: unknown, outcome: string): RuntimeError {
  const message = error instanceof Error ? error.message : String(error);
  // A damaged off-host copy of the WAL stays data_loss.
  const reason = error instanceof RuntimeError ? error.reason : error instanceof DomainError && error.kind === "data_loss" ? "lost" : "failed";
  return new RuntimeError(reason, `recovering ${slug} failed, ${outcome}: ${message}`, { cause: error });
}
