// Point-in-time recovery, step by step (the project's lock is held):
//
//  1. checks that touch nothing: names, the generation in the source's archive;
//     an earlier recovery cut short is undone; the marker records the project
//     as it is (recovery-marker.ts);
//  2. the project's WAL receiver and PostgreSQL stop (the data volume is
//     created when it is gone: a lost volume, or a clone);
//  3. a helper builds the recovered cluster inside the volume beside the
//     previous one (recovery-volume.ts): base backup, the generation's WAL
//     from the backup's start segment on (from the source's archive, or
//     streamed from another host's copy: RecoveryTarget.wal), recovery
//     settings; then swaps;
//  4. PostgreSQL starts on it, in the same container when there is one (same
//     name, network, pooler: the endpoint and DATABASE_URL stay), replays and
//     promotes; a clone's role and database get the clone's names;
//  5. the ordinary ensure steps (the spec's password, PgBouncer), and a new
//     WAL generation: the recovered server has no slot, so ensureWalArchive
//     begins one (the old receiver is removed before the new slot exists);
//  6. the marker goes (the recovery is committed), then the previous cluster.
// Any failure up to 5 undoes it all (recovery-undo.ts), and so does the next
// ensure or recovery when the service died in the middle.
import type { Readable } from "node:stream";
import type Docker from "dockerode";
import pg from "pg";
import { loggableError } from "../../log.js";
import { RuntimeError, type DatabaseSpec, type EnsureResult, type RecoveryTarget, type RuntimeTarget } from "../runtime.js";
import { checkSpec, checkTarget } from "../shared/target-checks.js";
import { superuserConninfo } from "./app-role-sql.js";
import { isRunning, type DockerEngine } from "./docker-engine.js";
import { PGDATA, projectNames, WAL_ARCHIVE_DIR, type ProjectNames } from "./docker-names.js";
import { createProjectVolume, projectVolumeExists } from "./docker-volumes.js";
import { demuxedLog } from "./docker-exec.js";
import { ensureProject } from "./ensure-steps.js";
import { withHelper } from "./helper-container.js";
import { ensurePostgresContainer, PG_OS_USER, runSuperuserScript } from "./postgres-container.js";
import { surveyContainers, type Survey } from "./project-survey.js";
import { createMarker, removeMarker, type RecoveryBefore } from "./recovery-marker.js";
import { settleInterruptedRecovery, undoRecovery, type UndoParts } from "./recovery-undo.js";
import { dropRecoveryLeftovers, RecoveryVolume } from "./recovery-volume.js";
import { waitFor } from "./wait-for.js";
import { listArchive, type ArchiveListing, type ArchivePlace } from "./wal-archive.js";
import { checkGeneration } from "./wal-names.js";
import { inspectReceiver, receiverGeneration, stopReceiver } from "./wal-receiver.js";
import { ensureWalArchive } from "./wal-setup.js";

const STOP_TIMEOUT_SECONDS = 30;
/** A receiver may complete a partial segment while a clone copies it: listed and copied again. */
const COPY_ATTEMPTS = 3;

export type RecoveryParts = UndoParts;

export interface Recovered {
  readonly generation: string;
  readonly result: EnsureResult;
}

export async function recoverProject(
  parts: RecoveryParts,
  spec: DatabaseSpec,
  base: Readable,
  recovery: RecoveryTarget,
  signal: AbortSignal | undefined,
): Promise<Recovered> {
  const { engine } = parts;
  checkSpec(spec);
  checkTarget(recovery.source);
  checkGeneration(recovery.generation);
  if (recovery.time !== undefined && !Number.isFinite(recovery.time.getTime())) throw new RuntimeError("failed", "invalid recovery target time");
  const names = projectNames(spec);
  const source = recovery.source;
  const sourceNames = projectNames(source);
  const clone = source.projectId !== spec.projectId;
  if (clone && source.slug === spec.slug) throw new RuntimeError("conflict", `a clone of ${source.slug} needs a slug of its own`);
  await engine.ping();
  signal?.throwIfAborted();
  await settleInterruptedRecovery(parts, spec, names);

  // 1. Nothing is touched until the source's archive is known to hold the generation.
  const [survey, volumeExisted, receiver, sourceReceiver] = await Promise.all([
    surveyContainers(engine, spec, names),
    projectVolumeExists(engine, spec, names),
    inspectReceiver(engine, spec, names),
    clone ? inspectReceiver(engine, source, sourceNames) : undefined,
  ]);
  const image = survey.postgres?.Image ?? (await imageId(engine, parts.settings.postgresImage));
  const sourcePlace: ArchivePlace = { receiver: clone ? sourceReceiver : receiver, image };
  // WAL from another host's copy (disaster recovery) is streamed in; otherwise the source's archive must hold the generation.
  const streamed = recovery.wal;
  const generation = streamed ? undefined : (await listArchive(engine, source, sourceNames, sourcePlace)).find((found) => found.id === recovery.generation);
  if (!streamed && !generation) {
    throw new RuntimeError("failed", `WAL generation ${recovery.generation} is not in the archive of ${source.slug}`);
  }
  const before: RecoveryBefore = {
    existed: Boolean(survey.postgres || survey.pgbouncer || volumeExisted || receiver),
    volumeExisted,
    postgresExisted: survey.postgres !== undefined,
    postgresRunning: isRunning(survey.postgres),
    generation: receiverGeneration(receiver),
  };
  await createMarker(engine, spec, names, image, before);
  const started = Date.now();
  engine.logger.info(
    { slug: spec.slug, source: source.slug, generation: recovery.generation, targetTime: recovery.time?.toISOString() },
    "point-in-time recovery started",
  );
  try {
    // 2.
    if (receiver) await stopReceiver(engine, names);
    if (survey.postgres && isRunning(survey.postgres)) await stopPostgres(engine, names);
    if (!volumeExisted) await createProjectVolume(engine, spec, names);
    signal?.throwIfAborted();
    // 3.
    await withHelper(
      engine,
      spec,
      {
        namePrefix: names.helper,
        image,
        mounts: [
          { volume: names.volume, target: PGDATA },
          // Mounting a volume that does not exist would make it: streamed WAL needs no archive here.
          ...(streamed ? [] : [{ volume: sourceNames.walVolume, target: WAL_ARCHIVE_DIR, readOnly: true }]),
        ],
      },
      async (helper) => {
        const volume = new RecoveryVolume(engine, helper, names.volume);
        await volume.prepare();
        await volume.extract(base);
        signal?.throwIfAborted();
        const start = await volume.startSegment();
        if (streamed) await volume.streamWal(streamed, start);
        else await copyArchived(volume, generation!, start, () => listArchive(engine, source, sourceNames, sourcePlace), source.slug);
        await volume.configure(recovery.time);
        await volume.swap();
      },
    );
    signal?.throwIfAborted();
    // 4.
    const postgres = await startPostgres(parts, spec, names, survey);
    await waitForPromotion(parts, spec, names, postgres);
    await resetRecoverySettings(engine, postgres, names);
    if (clone) await renameForClone(engine, postgres, names, sourceNames);
    // 5.
    const ensured = await ensureProject(parts, spec, names, signal);
    const walGeneration = await ensureWalArchive(ensured.wal, parts.walSetup);
    // 6.
    await removeMarker(engine, names);
    await dropRecoveryLeftovers(engine, postgres);
    engine.logger.info(
      { slug: spec.slug, source: source.slug, generation: walGeneration, ms: Date.now() - started },
      "point-in-time recovery done",
    );
    return { generation: walGeneration, result: ensured.result };
  } catch (error) {
    engine.logger.warn({ slug: spec.slug, err: loggableError(error) }, "point-in-time recovery failed; putting the previous database back");
    await undoRecovery(parts, spec, names, before).catch((undoError: unknown) => {
      engine.logger.error(
        { slug: spec.slug, err: loggableError(undoError) },
        "could not put the previous database back after a failed recovery; its next ensure tries again",
      );
    });
    throw error;
  }
}

/** The generation from the source's archive; listed again when a file went away meanwhile (a partial the receiver completed). */
async function copyArchived(volume: RecoveryVolume, generation: ArchiveListing, start: string, list: () => Promise<ArchiveListing[]>, sourceSlug: string): Promise<void> {
  let listed = generation;
  for (let attempt = 1; !(await volume.copyWal(listed, start)); attempt++) {
    if (attempt >= COPY_ATTEMPTS) throw new RuntimeError("failed", `WAL of generation ${generation.id} kept changing while it was copied`);
    const again = (await list()).find((found) => found.id === generation.id);
    if (!again) throw new RuntimeError("failed", `WAL generation ${generation.id} left the archive of ${sourceSlug} during the recovery`);
    listed = again;
  }
}

async function imageId(engine: DockerEngine, image: string): Promise<string> {
  const info = await engine.call(`inspecting image ${image}`, () => engine.docker.getImage(image).inspect());
  return info.Id;
}

async function stopPostgres(engine: DockerEngine, names: ProjectNames): Promise<void> {
  await engine.call(`stopping container ${names.postgres}`, async () => {
    try {
      await engine.docker.getContainer(names.postgres).stop({ t: STOP_TIMEOUT_SECONDS });
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode !== 304) throw error;
    }
  });
}

/** The same container when there is one; else one made as ensure makes it (a lost container, a clone). */
async function startPostgres(parts: RecoveryParts, spec: DatabaseSpec, names: ProjectNames, survey: Survey): Promise<Docker.Container> {
  const { engine } = parts;
  let info = survey.postgres;
  if (!info) {
    await parts.images.ensure(parts.settings.postgresImage);
    const networks = await parts.networks.ensure(spec, names);
    info = await ensurePostgresContainer(engine, spec, names, parts.settings, undefined, networks.private);
  }
  const container = engine.docker.getContainer(info.Id);
  await engine.startContainer(container, names.postgres);
  return container;
}

/**
 * Until PostgreSQL has replayed to the target and promoted. A server that
 * stops (PostgreSQL refuses a target it cannot reach, a broken backup) ends
 * the wait at once with its last FATAL line, rather than at the deadline.
 */
async function waitForPromotion(parts: RecoveryParts, spec: RuntimeTarget, names: ProjectNames, container: Docker.Container): Promise<void> {
  const { engine } = parts;
  const startedAt = Math.floor(Date.now() / 1000) - 1;
  const first = await engine.call(`inspecting container ${names.postgres}`, () => container.inspect());
  const restarts = first.RestartCount;
  const timeoutMs = parts.settings.recoveryTimeoutMs;
  await waitFor(engine, {
    deadline: Date.now() + timeoutMs,
    timeoutMs,
    signal: undefined,
    what: `the recovery of ${spec.slug} (replay and promotion)`,
    containerName: names.postgres,
    attempt: async () => {
      const info = await engine.call(`inspecting container ${names.postgres}`, () => container.inspect());
      if (!isRunning(info) || info.RestartCount !== restarts) {
        throw new RuntimeError("failed", `the recovery of ${spec.slug} failed: PostgreSQL stopped${await lastFatal(container, startedAt)}`);
      }
      const outcome = await engine.tryExec(container, {
        cmd: ["psql", "-X", "-A", "-t", "-q", "--no-password", "-c", "SELECT pg_is_in_recovery()", "--dbname", superuserConninfo("postgres")],
        user: PG_OS_USER,
      });
      return outcome?.exitCode === 0 && outcome.stdout.trim() === "f" ? true : undefined;
    },
  });
}

/** The last FATAL or PANIC line PostgreSQL logged since `since` (its own words about recovery, no tenant data). */
async function lastFatal(container: Docker.Container, since: number): Promise<string> {
  try {
    const logs = (await container.logs({ stdout: true, stderr: true, follow: false, since, tail: 200 })) as unknown as Buffer;
    const lines = demuxedLog(logs).split("\n");
    const fatal = lines.reverse().find((line) => /\b(FATAL|PANIC):/.test(line));
    const message = fatal?.replace(/^.*?\b(FATAL|PANIC):\s*/, "").trim();
    return message ? `: ${message.slice(0, 300)}` : "";
  } catch {
    return "";
  }
}


async function resetRecoverySettings(engine: DockerEngine, postgres: Docker.Container, names: ProjectNames): Promise<void> {
  await runSuperuserScript(engine, postgres, `removing the recovery settings of ${names.postgres}`, [
    ...["restore_command", "recovery_target_timeline", "recovery_target_action", "recovery_target_time"].map(
      (name) => `ALTER SYSTEM RESET ${name};`,
    ),
    "SELECT pg_reload_conf();",
  ]);
}

/**
 * The recovered cluster is the source's: its app role and database carry
 * the source's names. Renamed (a role keeps its SCRAM verifier through a
 * rename; ensure then sets the clone's password). Autovacuum may still be
 * connected to the database a moment after promotion: the rename waits for
 * it, and is tried again.
 */
async function renameForClone(engine: DockerEngine, postgres: Docker.Container, names: ProjectNames, sourceNames: ProjectNames): Promise<void> {
  const statements = [
    `ALTER DATABASE ${pg.escapeIdentifier(sourceNames.database)} RENAME TO ${pg.escapeIdentifier(names.database)};`,
    `ALTER ROLE ${pg.escapeIdentifier(sourceNames.role)} RENAME TO ${pg.escapeIdentifier(names.role)};`,
  ];
  for (let attempt = 1; ; attempt++) {
    try {
      await runSuperuserScript(engine, postgres, `renaming ${sourceNames.database} to ${names.database} in ${names.postgres}`, statements.slice(0, 1));
      break;
    } catch (error) {
      if (attempt >= 3 || !/being accessed by other users/.test((error as Error).message)) throw error;
    }
  }
  await runSuperuserScript(engine, postgres, `renaming ${sourceNames.role} to ${names.role} in ${names.postgres}`, statements.slice(1));
}

