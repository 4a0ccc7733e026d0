// Taking a warm instance for a new project: claimed with the project's marker
// and renamed to the project's directory while its PostgreSQL runs on.
import { rename, rm, symlink } from "node:fs/promises";
import { dirname } from "node:path";
import { loggableError, type Logger } from "../../../log.js";
import type { DatabaseSpec } from "../../runtime.js";
import { socketDirInside, type InstancePaths } from "../instance/instance-paths.js";
import type { RunAs } from "../host/os-user.js";
import { SERVICE_ONLY, syncDir, writeServiceFile } from "../host/owned-files.js";
import { pathExists } from "../host/path-checks.js";
import type { PostgresServer } from "../children/postgres-server.js";
import type { WarmPool } from "./warm-pool.js";

/** A warm instance moved to a project's directory. */
export interface ClaimedWarmInstance {
  readonly postgres: PostgresServer;
  /** Its OS user, moved with it. */
  readonly runAs: RunAs;
  /** The symlink left at its old path for its running postmaster (see PostgresServer.relocate). */
  readonly alias: string;
}

export interface WarmClaimParts {
  readonly pool: WarmPool;
  readonly logger: Logger;
}

/**
 * For a project whose directory does not exist yet: a warm instance, claimed
 * with the project's marker and renamed to the project's directory while its
 * PostgreSQL runs on. Undefined when none is ready or it cannot move there.
 */
export async function claimWarmInstance(parts: WarmClaimParts, spec: DatabaseSpec, paths: InstancePaths): Promise<ClaimedWarmInstance | undefined> {
  const { pool } = parts;
  // A socket dir outside the instance dir (long paths) would not move with it.
  if (pool.size === 0 || !socketDirInside(paths) || (await pathExists(paths.dir))) return undefined;
  const warm = pool.take();
  if (!warm) return undefined;
  try {
    await writeServiceFile(warm.paths.projectMarker, `${spec.projectId}\n`, SERVICE_ONLY);
    await rename(warm.paths.dir, paths.dir);
  } catch (error) {
    parts.logger.warn({ slug: spec.slug, err: loggableError(error) }, "could not use a warm instance; copying the template instead");
    pool.discard(warm);
    return undefined;
  }
  // Straight after the rename: the postmaster reaches its files through the
  // path it was started with for as long as it runs.
  const alias = warm.paths.dir;
  const claimed = { postgres: warm.postgres, runAs: warm.runAs, alias };
  try {
    await symlink(paths.dir, alias);
    await syncDir(dirname(paths.dir));
  } catch (error) {
    await stopClaimed(claimed);
    throw error;
  }
  return claimed;
}

/** Stops a claimed instance's postmaster, keeping the alias until it is down (its shutdown checkpoint goes through it). */
export async function stopClaimed(warm: ClaimedWarmInstance): Promise<void> {
  await warm.postgres.stop();
  await rm(warm.alias, { force: true });
}
