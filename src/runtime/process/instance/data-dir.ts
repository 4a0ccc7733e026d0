// A project's data directory: used as found, or made from the template
// cluster. A new copy is renamed into place before it has reached the disk, so
// that PostgreSQL starts on its final path (it keeps that absolute path for
// life), and the caller flushes it (flushCopy) while the app's role and
// database are set up. A marker, made durable before the rename, says "not
// flushed yet" until the flush is done: should the machine stop in between,
// the next ensure finds it and copies again. No ensure has returned for such a
// copy, so no app has written to it. (A new project takes a spare copy, made
// and flushed ahead of time, before it gets here: see instance-dir.ts.)
import { randomBytes } from "node:crypto";
import { readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../../log.js";
import { RuntimeError } from "../../runtime.js";
import type { InstancePaths } from "./instance-paths.js";
import type { RunAs } from "../host/os-user.js";
import { readChildFile, removeTree, SERVICE_ONLY, syncDir, writeServiceFile } from "../host/owned-files.js";
import { pathExists } from "../host/path-checks.js";
import { stopStalePostmaster } from "../children/stale-process.js";
import { copyTemplate, syncFileSystem } from "../reserves/template-cluster.js";

export interface DataDirOptions {
  readonly slug: string;
  readonly paths: InstancePaths;
  readonly template: string;
  /** The host's PostgreSQL major: data of another one is refused. */
  readonly major: number;
  /** The instance's OS user: owns the data directory. */
  readonly runAs: RunAs;
  readonly logger: Logger;
}

export interface PreparedDataDir {
  /**
   * Where the data directory came from: found in place, or a new copy, which
   * is not on disk yet: flushCopy must be through before ensure returns.
   */
  readonly source: "existing" | "copy";
}

export async function prepareDataDir(options: DataDirOptions): Promise<PreparedDataDir> {
  const { paths, slug, runAs } = options;
  if (await pathExists(paths.unflushedMarker)) {
    await stopStalePostmaster(paths.pgdata, options.logger);
    await removeTree(paths.pgdata);
  }
  // The child's file: read only if it is a plain file of the instance's user.
  const version = (await readChildFile(join(paths.pgdata, "PG_VERSION"), runAs))?.trim();
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
    if (name.startsWith("pgdata.tmp-")) await removeTree(join(paths.dir, name));
  }
  const copy = join(paths.dir, `pgdata.tmp-${randomBytes(6).toString("hex")}`);
  try {
    await copyTemplate(options.template, copy, runAs);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new RuntimeError("failed", `copying the template cluster for ${slug} failed: ${message}`, { cause: error });
  }
  await writeServiceFile(paths.unflushedMarker, "", SERVICE_ONLY);
  await rename(copy, paths.pgdata);
  return { source: "copy" };
}

/**
 * Puts a new copy on disk and clears its marker. One syncfs makes ext4 commit
 * its journal, and until that commit is through, every file created or changed
 * on the file system waits (PostgreSQL fsyncs postmaster.pid as it starts): so
 * the caller starts this once the server is up, and sets up the app's role and
 * database meanwhile.
 */
export async function flushCopy(paths: InstancePaths): Promise<void> {
  // Also makes the rename durable.
  await syncFileSystem(paths.pgdata);
  await rm(paths.unflushedMarker, { force: true });
  await syncDir(paths.dir);
}
