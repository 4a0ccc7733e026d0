// A project's data directory: used as found, or made from the template
// cluster. A new copy is renamed into place before it has reached the disk, so
// that PostgreSQL starts on its final path (it keeps that absolute path for
// life), and the caller flushes it (flushCopy) while the app's role and
// database are set up. A marker, made durable before the rename, says "not
// flushed yet" until the flush is done: should the machine stop in between,
// the next ensure finds it and copies again. No ensure has returned for such a
// copy, so no app has written to it. A spare copy (spare-copies.ts), made and
// flushed ahead of time, is renamed into place instead when one is ready.
import { randomBytes } from "node:crypto";
import { readdir, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { loggableError, type Logger } from "../../log.js";
import { RuntimeError } from "../runtime.js";
import type { InstancePaths } from "./instance-paths.js";
import type { RunAs } from "./os-user.js";
import { readIfExists, syncDir, writeOwnedFile } from "./owned-files.js";
import { pathExists } from "./path-checks.js";
import { stopStalePostmaster } from "./stale-process.js";
import { copyTemplate, syncFileSystem } from "./template-cluster.js";

export interface DataDirOptions {
  readonly slug: string;
  readonly paths: InstancePaths;
  readonly template: string;
  /** The host's PostgreSQL major: data of another one is refused. */
  readonly major: number;
  readonly runAs: RunAs;
  readonly logger: Logger;
  /** A spare copy (spare-copies.ts) to rename into place instead of copying, if one is ready. */
  readonly takeSpare: () => string | undefined;
}

export interface PreparedDataDir {
  /**
   * Where the data directory came from: found in place, a spare renamed into
   * place, or a new copy, which is not on disk yet: flushCopy must be through
   * before ensure returns.
   */
  readonly source: "existing" | "spare" | "copy";
}

export async function prepareDataDir(options: DataDirOptions): Promise<PreparedDataDir> {
  const { paths, slug, runAs } = options;
  if (await pathExists(paths.unflushedMarker)) {
    await stopStalePostmaster(paths.pgdata, options.logger);
    await rm(paths.pgdata, { recursive: true, force: true });
  }
  const version = (await readIfExists(join(paths.pgdata, "PG_VERSION")))?.trim();
  if (version !== undefined) {
    if (version !== String(options.major)) {
      throw new RuntimeError(
        "failed",
        `the data of ${slug} is PostgreSQL ${version} but the host runs PostgreSQL ${options.major}: upgrade it with pg_upgrade, or set SOTA_PG_BIN_DIR to that version's bin directory`,
      );
    }
    return { source: "existing" };
  }
  if (await pathExists(paths.pgdata)) {
    throw new RuntimeError("failed", `the data directory of ${slug} (${paths.pgdata}) is incomplete; move it away to recreate the database`);
  }
  // Copied under a temporary name: a crash mid-copy leaves only a leftover to remove.
  for (const name of await readdir(paths.dir)) {
    if (name.startsWith("pgdata.tmp-")) await rm(join(paths.dir, name), { recursive: true, force: true });
  }
  if (await claimSpare(options)) return { source: "spare" };
  const copy = join(paths.dir, `pgdata.tmp-${randomBytes(6).toString("hex")}`);
  try {
    await copyTemplate(options.template, copy, runAs);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new RuntimeError("failed", `copying the template cluster for ${slug} failed: ${message}`, { cause: error });
  }
  await writeOwnedFile(paths.unflushedMarker, "", runAs, 0o600);
  await rename(copy, paths.pgdata);
  return { source: "copy" };
}

/**
 * Renames a spare copy, flushed when it was made, into place; false when none
 * is ready or it cannot be moved (then it is dropped and the caller copies).
 */
async function claimSpare(options: DataDirOptions): Promise<boolean> {
  const spare = options.takeSpare();
  if (spare === undefined) return false;
  try {
    await rename(spare, options.paths.pgdata);
  } catch (error) {
    options.logger.warn({ slug: options.slug, err: loggableError(error) }, "could not use a spare copy; copying the template instead");
    await rm(spare, { recursive: true, force: true }).catch(() => undefined);
    return false;
  }
  // Durable in both directories before ensure may return: after a crash the
  // copy is the project's, or still a spare, never in neither.
  await Promise.all([syncDir(options.paths.dir), syncDir(dirname(spare))]);
  return true;
}

/**
 * Puts a new copy on disk and clears its marker. One syncfs makes ext4 commit
 * its journal, and until that commit is through, every file created or changed
 * on the file system waits (PostgreSQL fsyncs postmaster.pid as it starts): so
 * the caller starts this once the server is up, and sets up the app's role and
 * database meanwhile.
 */
export async function flushCopy(paths: InstancePaths, runAs: RunAs): Promise<void> {
  // Also makes the rename durable.
  await syncFileSystem(paths.pgdata, runAs);
  await rm(paths.unflushedMarker, { force: true });
  await syncDir(paths.dir);
}
