// A recovery replaces a data directory in steps: the new one is built and
// replayed as pgdata.recovering, the old one moved to pgdata.before-recovery,
// the new one renamed to pgdata, a new WAL generation opened, the instance
// ensured. A marker (the service's file, durable) is written before the first
// step and removed after the last, so that a recovery cut short by a crash of
// the service is undone by the next ensure of the database, as a failed one
// is undone at once: the new directory dropped, the old one put back, the
// previous generation current again. The old data directory is never
// deleted before the recovery has succeeded (phase "done").
import { rename } from "node:fs/promises";
import type { Logger } from "../../../log.js";
import { RuntimeError } from "../../runtime.js";
import { GENERATION_ID } from "../../shared/wal-names.js";
import { stopStalePostmaster } from "../children/stale-process.js";
import type { InstanceUsers } from "../host/instance-users.js";
import { readIfExists, removeTree, SERVICE_ONLY, syncDir, writeServiceFile } from "../host/owned-files.js";
import { pathExists } from "../host/path-checks.js";
import { socketDirInside, type InstancePaths } from "../instance/instance-paths.js";
import { WalArchive } from "./wal-archive.js";

export interface RecoveryMarker {
  /** "in-place": the instance existed; "new": the recovery made it (a clone, or a database this host lost). */
  readonly kind: "in-place" | "new";
  /** The generation current before (in place). */
  readonly previousGeneration?: string | undefined;
  /** "done": the recovered database is up; only the old data directory is left to delete. */
  readonly phase: "recovering" | "done";
}

export async function writeRecoveryMarker(paths: InstancePaths, marker: RecoveryMarker): Promise<void> {
  await writeServiceFile(paths.recoveryMarker, `${JSON.stringify(marker)}\n`, SERVICE_ONLY);
}

export async function readRecoveryMarker(paths: InstancePaths): Promise<RecoveryMarker | undefined> {
  const text = await readIfExists(paths.recoveryMarker).catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const parsed = JSON.parse(text) as Partial<RecoveryMarker>;
    const previous = parsed.previousGeneration;
    if ((parsed.kind === "in-place" || parsed.kind === "new") && (parsed.phase === "recovering" || parsed.phase === "done") && (previous === undefined || GENERATION_ID.test(previous))) {
      return { kind: parsed.kind, previousGeneration: previous, phase: parsed.phase };
    }
  } catch {
    // Reported below.
  }
  throw new RuntimeError("failed", `${paths.recoveryMarker} is not a recovery marker of sota-db; remove it`);
}

/** The recovered database is up: the old data directory goes, then the marker. */
export async function finishRecovery(paths: InstancePaths, marker: RecoveryMarker): Promise<void> {
  if (marker.phase !== "done") await writeRecoveryMarker(paths, { ...marker, phase: "done" });
  await removeTree(paths.pgdataBeforeRecovery);
  await removeTree(paths.recoveryMarker);
  await syncDir(paths.dir);
}

/**
 * Undoes a recovery of an instance that existed (in place): what it built is
 * removed, the old data directory (if there was one) put back, the previous
 * generation made current again (the new one removed). The caller has stopped
 * the instance's processes; a server left running by a killed run is stopped here.
 */
export async function undoRecovery(paths: InstancePaths, marker: RecoveryMarker, users: InstanceUsers, logger: Logger): Promise<void> {
  await stopStalePostmaster(paths.pgdataRecovering, logger);
  await removeTree(paths.pgdataRecovering);
  if (await pathExists(paths.pgdataBeforeRecovery)) {
    await stopStalePostmaster(paths.pgdata, logger);
    await removeTree(paths.pgdata);
    await rename(paths.pgdataBeforeRecovery, paths.pgdata);
  }
  const owner = await users.recorded(paths.dir);
  if (owner !== undefined) {
    const archive = new WalArchive(paths, owner, "");
    const current = await archive.current();
    if (current !== marker.previousGeneration) {
      await archive.setCurrent(marker.previousGeneration);
      if (current !== undefined) await archive.removeGeneration(current);
    }
  }
  await removeTree(paths.recoveryMarker);
  await syncDir(paths.dir);
}

/**
 * Run by ensure before it touches an instance directory: a recovery a crash
 * cut short is undone (or finished, when it was done), and a database the
 * recovery was making is removed whole (ensure then makes it as if new).
 */
export async function settleInterruptedRecovery(paths: InstancePaths, users: InstanceUsers, logger: Logger): Promise<void> {
  const marker = await readRecoveryMarker(paths);
  if (marker === undefined) return;
  if (marker.phase === "done") {
    await finishRecovery(paths, marker);
    return;
  }
  logger.warn({ dir: paths.dir, kind: marker.kind }, "undoing a recovery that an earlier run of the service did not finish");
  if (marker.kind === "new") {
    await users.release(paths.dir);
    await removeTree(paths.dir);
    if (!socketDirInside(paths)) await removeTree(paths.socketDir);
    return;
  }
  await undoRecovery(paths, marker, users, logger);
}
