// A project's instance directory, made ready for ensure: a warm instance's or
// a spare copy's renamed into place for a new project (each comes with its OS
// user, made ahead of time), or its own, taken back from an earlier release if
// need be, with the owner marker, its OS user and a data directory (see data-dir.ts).
import { lstat, mkdir, rename } from "node:fs/promises";
import { dirname, join } from "node:path";
import { loggableError } from "../../../log.js";
import { dataLost, RuntimeError, type DatabaseSpec } from "../../runtime.js";
import { prepareDataDir, type PreparedDataDir } from "./data-dir.js";
import type { DriverParts } from "../driver-parts.js";
import { takeBackEarlierInstance } from "./earlier-release.js";
import { instanceLayout, type InstancePaths } from "./instance-paths.js";
import { giveDataDir, settleLayout } from "./instance-layout.js";
import type { RunAs } from "../host/os-user.js";
import { readIfExists, SERVICE_ONLY, syncDir, writeServiceFile } from "../host/owned-files.js";
import { pathExists } from "../host/path-checks.js";
import { slugTaken } from "../../shared/target-checks.js";
import { claimWarmInstance, type ClaimedWarmInstance } from "../reserves/warm-claim.js";
import { settleInterruptedRecovery } from "../pitr/recovery-marker.js";

export interface PreparedDir {
  readonly source: PreparedDataDir["source"] | "spare" | "warm";
  /** The OS user the instance runs as. */
  readonly runAs: RunAs;
  /** The warm instance it came from, PostgreSQL running in it already. */
  readonly warm?: ClaimedWarmInstance;
}

/** `recovering`: called by a recovery, whose marker in the directory is not a leftover. */
export async function prepareInstanceDir(parts: DriverParts, spec: DatabaseSpec, paths: InstancePaths, template: string, recovering = false): Promise<PreparedDir> {
  const { users, logger } = parts;
  if (!recovering) await settleInterruptedRecovery(paths, users, logger);
  if (spec.mustExist && !(await holdsCluster(paths))) throw dataLost(spec.slug, `${paths.pgdata} holds no cluster`);
  const warm = await claimWarmInstance(parts, spec, paths);
  // A warm instance's copy was flushed before it joined the pool.
  if (warm) {
    await settleLayout(paths, warm.runAs);
    return { source: "warm", runAs: warm.runAs, warm };
  }
  const spare = await claimSpare(parts, spec, paths);
  if (spare) {
    await settleLayout(paths, spare);
    return { source: "spare", runAs: spare };
  }
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  await takeBackEarlierInstance(paths, logger);
  const marker = (await readIfExists(paths.projectMarker))?.trim();
  if (marker !== undefined && marker !== spec.projectId) throw slugTaken(spec.slug);
  if (marker === undefined) await writeServiceFile(paths.projectMarker, `${spec.projectId}\n`, SERVICE_ONLY);
  let runAs = await users.recorded(paths.dir);
  if (runAs === undefined) {
    runAs = await users.assign(paths.dir);
    logger.info({ slug: spec.slug, user: runAs.name }, "database given an OS user of its own");
  }
  if (await giveDataDir(paths, runAs)) logger.info({ slug: spec.slug, user: runAs.name }, "data directory given to the database's OS user");
  const prepared = await prepareDataDir({ slug: spec.slug, paths, template, major: parts.binaries.postgres.major, runAs, logger });
  await settleLayout(paths, runAs);
  return { source: prepared.source, runAs };
}

/**
 * For a project whose directory does not exist yet: a spare copy, claimed with
 * the project's marker and renamed to the project's directory, its OS user
 * with it. Undefined when none is ready or it cannot move there (then it is
 * dropped and the caller copies). Durable in both directories before ensure
 * may return: after a crash the copy is the project's, or still a spare whose
 * marker gets it dropped, never in neither.
 */
async function claimSpare(parts: DriverParts, spec: DatabaseSpec, paths: InstancePaths): Promise<RunAs | undefined> {
  if (await pathExists(paths.dir)) return undefined;
  const spare = parts.spares.take();
  if (spare === undefined) return undefined;
  try {
    await writeServiceFile(instanceLayout(spare).projectMarker, `${spec.projectId}\n`, SERVICE_ONLY);
    await rename(spare, paths.dir);
  } catch (error) {
    parts.logger.warn({ slug: spec.slug, err: loggableError(error) }, "could not use a spare copy; copying the template instead");
    parts.spares.discard(spare);
    return undefined;
  }
  await Promise.all([syncDir(dirname(paths.dir)), syncDir(dirname(spare))]);
  const runAs = await parts.users.recorded(paths.dir);
  if (runAs === undefined) throw new RuntimeError("failed", `the OS user of the spare copy given to ${spec.slug} is gone; remove ${paths.userRecord} and ensure again`);
  return runAs;
}

/**
 * Whether the data directory still holds a cluster. lstat only: pgdata is the
 * child's, and a link it planted there counts as no cluster.
 */
export async function holdsCluster(paths: InstancePaths): Promise<boolean> {
  const version = await lstat(join(paths.pgdata, "PG_VERSION")).catch(() => undefined);
  return version?.isFile() ?? false;
}
