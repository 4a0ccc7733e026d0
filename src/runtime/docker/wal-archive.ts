// The WAL archive volume sota-wal-{slug}: one directory per WAL generation,
// written only by the project's WAL receiver (pg_receivewal). Read, listed and
// pruned through `docker exec` as the postgres user in the receiver while it
// runs, else in a helper container that mounts the volume (read-only unless
// pruning). No tenant process mounts it.
//
// Only names of the shapes in wal-names.ts are ever listed, read or removed:
// the shell globs below match nothing else (no newline, no path), and a
// symbolic link is never followed nor taken for a file or a generation
// (`find -type f`, `[ -L ]`). Links cannot appear there from a tenant (its
// server only sends WAL, whose file names pg_receivewal computes); the checks
// make a planted one (by whoever could write the volume) harmless too, and
// the helper or receiver that runs them sees no other project's archive.
import type { Readable } from "node:stream";
import type Docker from "dockerode";
import { RuntimeError, type RuntimeTarget, type WalGeneration, type WalSegment } from "../runtime.js";
import { failedStream } from "../shared/failed-stream.js";
import { isRunning, type DockerEngine } from "./docker-engine.js";
import { toRuntimeError } from "./docker-errors.js";
import { execReadable } from "./docker-exec.js";
import { WAL_ARCHIVE_DIR, type ProjectNames } from "./docker-names.js";
import { createOwnedVolume, ownedVolumeExists, removeVolume } from "./docker-volumes.js";
import { removeHelper, startHelper, withHelper } from "./helper-container.js";
import { PG_OS_USER } from "./postgres-container.js";
import { lastLine } from "./psql-messages.js";
import { archivedFile, checkGeneration, checkWalFileName, GENERATION } from "./wal-names.js";
import { receiverGeneration } from "./wal-receiver.js";

const HEX = "[0-9A-F]";
const SEGMENT_GLOB = HEX.repeat(24);
const HISTORY_GLOB = `${HEX.repeat(8)}.history`;
const GENERATION_GLOB = `${"[0-9]".repeat(8)}T${"[0-9]".repeat(6)}Z`;
const NOT_ARCHIVED = 21;

/**
 * Lines "D {generation}" and "F {bytes} {mtime} {generation}/{file}", the
 * modification time to the millisecond: the end of a generation's WAL bounds
 * the recovery window, and a second's rounding would cut its last commits off.
 */
const LIST_SCRIPT = `cd ${WAL_ARCHIVE_DIR} 2>/dev/null || exit 0
for g in ${GENERATION_GLOB}; do
  [ -d "$g" ] && [ ! -L "$g" ] || continue
  printf 'D %s\\n' "$g"
  find "$g" -mindepth 1 -maxdepth 1 -type f \\( -name '${SEGMENT_GLOB}' -o -name '${SEGMENT_GLOB}.partial' -o -name '${HISTORY_GLOB}' \\) -exec stat -c 'F %s %.3Y %n' {} +
done`;

/**
 * Streams one file, its partial while it is still being written (which
 * pg_receivewal may rename to the complete name meanwhile: tried twice).
 */
const READ_SCRIPT = `cd ${WAL_ARCHIVE_DIR} 2>/dev/null || exit ${NOT_ARCHIVED}
[ -d "$1" ] && [ ! -L "$1" ] || exit ${NOT_ARCHIVED}
for attempt in 1 2; do
  for f in "$1/$2" "$1/$2.partial"; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then cat -- "$f" 2>/dev/null && exit 0; fi
  done
done
exit ${NOT_ARCHIVED}`;

/** Removes the paths on stdin (generation directories or files in them, checked by the caller); never through a link. */
const PRUNE_SCRIPT = `cd ${WAL_ARCHIVE_DIR} || exit 1
while IFS= read -r p; do
  [ -n "$p" ] || continue
  if [ -L "$p" ]; then continue; fi
  rm -rf -- "$p"
done`;

/** Hands a fresh archive root to the postgres user (run as root in a helper, the one command that is). */
const CLAIM_ROOT_SCRIPT = `d=${WAL_ARCHIVE_DIR}
[ "$(stat -c %u "$d")" = "$(id -u ${PG_OS_USER})" ] && exit 0
chmod 700 "$d" && chown ${PG_OS_USER}: "$d"`;

export interface ArchiveListing {
  readonly id: string;
  readonly bytes: number;
  readonly lastReceivedAt: Date | null;
  readonly segments: readonly WalSegment[];
}

/** The archive volume: false when missing, a conflict when not this project's. */
export function archiveExists(engine: DockerEngine, target: RuntimeTarget, names: ProjectNames): Promise<boolean> {
  return ownedVolumeExists(engine, target, names.walVolume, "wal");
}

/**
 * Creates the archive volume when missing, makes sure the postgres user owns
 * its root (a fresh volume's is root's), and makes the directory of the
 * generation `choose` picks from those already there (so it is listed as
 * soon as its receiver exists). Answers that generation.
 */
export async function prepareArchive(
  engine: DockerEngine,
  target: RuntimeTarget,
  names: ProjectNames,
  image: string,
  choose: (existing: readonly string[]) => string,
): Promise<string> {
  if (!(await archiveExists(engine, target, names))) await createOwnedVolume(engine, target, names.walVolume, "wal");
  return withHelper(engine, target, helperSpec(names, image, false), async (helper) => {
    const claimed = await engine.exec(helper, `preparing volume ${names.walVolume}`, { cmd: ["sh", "-c", CLAIM_ROOT_SCRIPT], user: "root" });
    if (claimed.exitCode !== 0) throw new RuntimeError("failed", `preparing volume ${names.walVolume} failed${lastLine(claimed.stderr)}`);
    const generation = choose((await listIn(engine, helper, names)).map((found) => found.id));
    checkGeneration(generation);
    const made = await engine.exec(helper, `making WAL generation ${generation} of ${target.slug}`, {
      cmd: ["sh", "-c", `umask 077 && cd ${WAL_ARCHIVE_DIR} && { [ -L "$1" ] && rm -f "$1"; mkdir -p "$1"; }`, "sh", generation],
      user: PG_OS_USER,
    });
    if (made.exitCode !== 0) throw new RuntimeError("failed", `making WAL generation ${generation} of ${target.slug} failed${lastLine(made.stderr)}`);
    return generation;
  });
}

export async function removeArchive(engine: DockerEngine, target: RuntimeTarget, names: ProjectNames): Promise<void> {
  if (await archiveExists(engine, target, names)) await removeVolume(engine, names.walVolume);
}

/** Where the archive can be worked on: the running receiver, else a helper made for the purpose. */
export interface ArchivePlace {
  readonly receiver: Docker.ContainerInspectInfo | undefined;
  /** The image a helper runs: the receiver's, else the one given. */
  readonly image: string;
}

export async function listArchive(
  engine: DockerEngine,
  target: RuntimeTarget,
  names: ProjectNames,
  place: ArchivePlace,
): Promise<WalGeneration[]> {
  if (!(await archiveExists(engine, target, names))) return [];
  const listing = await inArchive(engine, target, names, place, false, (container) => listIn(engine, container, names));
  const streamingInto = isRunning(place.receiver) ? receiverGeneration(place.receiver) : undefined;
  return listing.map((generation) => ({ ...generation, streaming: generation.id === streamingInto }));
}

export function readArchived(
  engine: DockerEngine,
  target: RuntimeTarget,
  names: ProjectNames,
  place: Promise<ArchivePlace>,
  generation: string,
  name: string,
): Readable {
  try {
    checkGeneration(generation);
    checkWalFileName(name);
  } catch (error) {
    return failedStream(error);
  }
  let helper: Docker.Container | undefined;
  const container = (async () => {
    if (!(await archiveExists(engine, target, names))) {
      throw new RuntimeError("failed", `database ${target.slug} has no WAL archive`);
    }
    const where = await place;
    if (where.receiver && isRunning(where.receiver)) return engine.docker.getContainer(where.receiver.Id);
    helper = await startHelper(engine, target, helperSpec(names, where.image, true));
    return helper;
  })();
  const stream = execReadable(
    engine.docker,
    container,
    { cmd: ["sh", "-c", READ_SCRIPT, "sh", generation, name], user: PG_OS_USER },
    (outcome) => {
      if (outcome.exitCode === 0) return undefined;
      if (outcome.exitCode === NOT_ARCHIVED) {
        return new RuntimeError("failed", `WAL file ${name} of generation ${generation} is not in the archive of ${target.slug}`);
      }
      return new RuntimeError("failed", `reading WAL file ${name} of ${target.slug} failed (exit code ${outcome.exitCode})${lastLine(outcome.stderr)}`);
    },
    (error) => toRuntimeError(error, `reading WAL file ${name} of ${target.slug}`, engine.endpoint),
  );
  stream.once("close", () => {
    if (helper) void removeHelper(engine, helper);
  });
  return stream;
}

/**
 * Removes what no kept base backup needs: generations not in `keep` (never
 * the one being written), and in kept ones the segments before the start
 * segment. History files stay: a recovery needs its timeline's.
 */
export async function pruneArchive(
  engine: DockerEngine,
  target: RuntimeTarget,
  names: ProjectNames,
  place: ArchivePlace,
  keep: ReadonlyMap<string, string>,
): Promise<void> {
  for (const [generation, start] of keep) {
    checkGeneration(generation);
    checkWalFileName(start);
  }
  if (!(await archiveExists(engine, target, names))) return;
  const current = receiverGeneration(place.receiver);
  await inArchive(engine, target, names, place, true, async (container) => {
    const paths: string[] = [];
    for (const generation of await listIn(engine, container, names)) {
      const start = keep.get(generation.id);
      if (start === undefined) {
        if (generation.id !== current) paths.push(generation.id);
        continue;
      }
      for (const segment of generation.segments) {
        // The receiver is writing the current generation's partial segment: never pulled from under it.
        if (!segment.complete && generation.id === current) continue;
        if (segment.name.length === 24 && segment.name < start) {
          paths.push(`${generation.id}/${segment.name}${segment.complete ? "" : ".partial"}`);
        }
      }
    }
    if (paths.length === 0) return;
    const outcome = await engine.exec(container, `pruning the WAL archive of ${target.slug}`, {
      cmd: ["sh", "-c", PRUNE_SCRIPT],
      user: PG_OS_USER,
      stdin: `${paths.join("\n")}\n`,
    });
    if (outcome.exitCode !== 0) throw new RuntimeError("failed", `pruning the WAL archive of ${target.slug} failed${lastLine(outcome.stderr)}`);
    engine.logger.info({ slug: target.slug, removed: paths.length }, "WAL archive pruned");
  });
}

/** Removes one generation's directory (a generation that never served: a recovery that was undone). */
export async function removeGeneration(
  engine: DockerEngine,
  target: RuntimeTarget,
  names: ProjectNames,
  place: ArchivePlace,
  generation: string,
): Promise<void> {
  checkGeneration(generation);
  await inArchive(engine, target, names, place, true, async (container) => {
    await engine.exec(container, `removing WAL generation ${generation} of ${target.slug}`, {
      cmd: ["sh", "-c", PRUNE_SCRIPT],
      user: PG_OS_USER,
      stdin: `${generation}\n`,
    });
  });
}

async function inArchive<T>(
  engine: DockerEngine,
  target: RuntimeTarget,
  names: ProjectNames,
  place: ArchivePlace,
  write: boolean,
  work: (container: Docker.Container) => Promise<T>,
): Promise<T> {
  if (place.receiver && isRunning(place.receiver)) return work(engine.docker.getContainer(place.receiver.Id));
  return withHelper(engine, target, helperSpec(names, place.image, !write), work);
}

function helperSpec(names: ProjectNames, image: string, readOnly: boolean) {
  return { namePrefix: names.helper, image, mounts: [{ volume: names.walVolume, target: WAL_ARCHIVE_DIR, readOnly }] };
}

async function listIn(engine: DockerEngine, container: Docker.Container, names: ProjectNames): Promise<ArchiveListing[]> {
  const outcome = await engine.exec(container, `listing volume ${names.walVolume}`, { cmd: ["sh", "-c", LIST_SCRIPT], user: PG_OS_USER });
  if (outcome.exitCode !== 0) throw new RuntimeError("failed", `listing volume ${names.walVolume} failed${lastLine(outcome.stderr)}`);
  return parseListing(outcome.stdout);
}

/** The listing script's output as generations, oldest first, each with its files in name order. */
export function parseListing(text: string): ArchiveListing[] {
  const generations = new Map<string, { segments: WalSegment[]; newest: number }>();
  for (const line of text.split("\n")) {
    const directory = /^D (\S+)$/.exec(line);
    if (directory?.[1] && GENERATION.test(directory[1])) {
      if (!generations.has(directory[1])) generations.set(directory[1], { segments: [], newest: 0 });
      continue;
    }
    const file = /^F (\d+) (\d+(?:\.\d+)?) ([^/]+)\/([^/]+)$/.exec(line);
    if (!file) continue;
    const generation = generations.get(file[3] ?? "");
    const found = archivedFile(file[4] ?? "");
    if (!generation || !found) continue;
    generation.segments.push({ ...found, bytes: Number(file[1]) });
    generation.newest = Math.max(generation.newest, Number(file[2]));
  }
  return [...generations.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([id, { segments, newest }]) => {
      segments.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      return {
        id,
        segments,
        bytes: segments.reduce((sum, segment) => sum + segment.bytes, 0),
        lastReceivedAt: segments.length > 0 ? new Date(Math.floor(newest * 1000)) : null,
      };
    });
}
