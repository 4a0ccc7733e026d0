// Undoing a recovery: after it failed, or, found by its marker, after the
// service died in the middle of one. The project is put back as the marker
// says it was: the previous cluster back at the root of its volume (or the
// volume the recovery made removed), PostgreSQL stopped or started as it was,
// and the WAL receiver streaming into its generation again; a generation the
// recovery began is removed (its server never served). A project that had
// nothing before (a clone) has nothing again. Every step can be run again, so
// an undo cut short is finished by the next one; the marker goes last.
import type Docker from "dockerode";
import { loggableError } from "../../log.js";
import type { DatabaseSpec, RuntimeTarget } from "../runtime.js";
import { isRunning } from "./docker-engine.js";
import { PGDATA, type ProjectNames } from "./docker-names.js";
import { projectVolumeExists, removeVolume } from "./docker-volumes.js";
import type { EnsureParts } from "./ensure-steps.js";
import { withHelper } from "./helper-container.js";
import { waitUntilAccepting } from "./postgres-container.js";
import { surveyContainers } from "./project-survey.js";
import { readMarker, removeMarker, type RecoveryBefore } from "./recovery-marker.js";
import { RecoveryVolume } from "./recovery-volume.js";
import { removeProject } from "./remove-steps.js";
import { removeGeneration } from "./wal-archive.js";
import { inspectReceiver, receiverGeneration, removeReceiver } from "./wal-receiver.js";
import { ensureWalArchive, type WalSetup } from "./wal-setup.js";

/**
 * What runs there is usually the recovered cluster, which is thrown away, or
 * the image's entrypoint a moment after its start (a shell as PID 1, which
 * ignores SIGINT): no reason to wait long. PostgreSQL is crash-safe anyway.
 */
const STOP_TIMEOUT_SECONDS = 5;

export interface UndoParts extends EnsureParts {
  readonly walSetup: WalSetup;
}

/** Undoes a recovery the marker says was cut short; nothing when there is none. */
export async function settleInterruptedRecovery(parts: UndoParts, spec: DatabaseSpec, names: ProjectNames): Promise<void> {
  const before = await readMarker(parts.engine, spec, names);
  if (!before) return;
  parts.engine.logger.warn({ slug: spec.slug }, "a recovery of this database was cut short; undoing it");
  await undoRecovery(parts, spec, names, before);
}

export async function undoRecovery(parts: UndoParts, spec: DatabaseSpec, names: ProjectNames, before: RecoveryBefore): Promise<void> {
  const { engine } = parts;
  if (!before.existed) {
    // A clone (or a database this host did not have): nothing of it stays.
    await removeProject(engine, parts.networks, spec, names, { keepData: false });
    await removeMarker(engine, names);
    return;
  }
  const current = await surveyContainers(engine, spec, names);
  const image = current.postgres?.Image ?? (await engine.call("inspecting the PostgreSQL image", () => engine.docker.getImage(parts.settings.postgresImage).inspect())).Id;
  if (current.postgres) {
    const handle = engine.docker.getContainer(current.postgres.Id);
    if (!before.postgresExisted) {
      await engine.call(`removing container ${names.postgres}`, () => handle.remove({ force: true, v: true }));
    } else if (isRunning(current.postgres)) {
      await engine.call(`stopping container ${names.postgres}`, () => handle.stop({ t: STOP_TIMEOUT_SECONDS }));
    }
  }
  if (!before.volumeExisted) {
    if (await projectVolumeExists(engine, spec, names)) await removeVolume(engine, names.volume);
  } else {
    await withHelper(engine, spec, { namePrefix: names.helper, image, mounts: [{ volume: names.volume, target: PGDATA }] }, (helper) =>
      new RecoveryVolume(engine, helper, names.volume).undo(),
    );
  }
  await forgetBegunGeneration(parts, spec, names, before, image);
  if (before.postgresExisted && before.postgresRunning && current.postgres) {
    const postgres = engine.docker.getContainer(current.postgres.Id);
    await engine.startContainer(postgres, names.postgres);
    const timeoutMs = parts.settings.readyTimeoutMs;
    await waitUntilAccepting(engine, postgres, names.postgres, { at: Date.now() + timeoutMs, timeoutMs }, undefined);
    await resumeReceiver(parts, spec, names, postgres);
  } else {
    // Its server is not running (a lost database): its receiver waits for it, as before.
    const receiver = await inspectReceiver(engine, spec, names);
    if (receiver && !isRunning(receiver)) await engine.startContainer(engine.docker.getContainer(receiver.Id), names.walReceiver);
  }
  await removeMarker(engine, names);
  engine.logger.info({ slug: spec.slug }, "recovery undone: the database is as it was");
}

/** A receiver the recovery made for its new generation goes, and that generation with it. */
async function forgetBegunGeneration(
  parts: UndoParts,
  target: RuntimeTarget,
  names: ProjectNames,
  before: RecoveryBefore,
  image: string,
): Promise<void> {
  const { engine } = parts;
  const receiver = await inspectReceiver(engine, target, names);
  const begun = receiverGeneration(receiver);
  if (!receiver || begun === before.generation) return;
  await removeReceiver(engine, names, receiver.Id);
  if (begun) await removeGeneration(engine, target, names, { receiver: undefined, image }, begun);
}

/** The previous server's receiver streams again: the stopped one started, or one made for the newest generation. */
async function resumeReceiver(parts: UndoParts, spec: DatabaseSpec, names: ProjectNames, postgres: Docker.Container): Promise<void> {
  const { engine } = parts;
  try {
    const info = await engine.call(`inspecting container ${names.postgres}`, () => postgres.inspect());
    const network = info.NetworkSettings.Networks?.[names.privateNetwork]?.NetworkID;
    if (!network) return;
    await ensureWalArchive({ engine, target: spec, names, postgres, image: info.Image, privateNetworkId: network }, parts.walSetup);
  } catch (error) {
    // The database serves as before; its next ensure sets its archiving up again.
    engine.logger.warn({ slug: spec.slug, err: loggableError(error) }, "could not resume WAL archiving after undoing a recovery");
  }
}
