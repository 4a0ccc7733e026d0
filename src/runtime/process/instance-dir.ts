// A project's instance directory, made ready for ensure: a warm instance's,
// or its own with the owner marker and a data directory (see data-dir.ts).
import type { DatabaseSpec } from "../runtime.js";
import { prepareDataDir, type PreparedDataDir } from "./data-dir.js";
import type { DriverParts } from "./driver-parts.js";
import type { InstancePaths } from "./instance-paths.js";
import { ensureOwnedDir, readIfExists, writeOwnedFile } from "./owned-files.js";
import { slugTaken } from "./target-checks.js";
import { claimWarmInstance, type ClaimedWarmInstance } from "./warm-claim.js";

export interface PreparedDir {
  readonly source: PreparedDataDir["source"] | "warm";
  /** The warm instance it came from, PostgreSQL running in it already. */
  readonly warm?: ClaimedWarmInstance;
}

export async function prepareInstanceDir(parts: DriverParts, spec: DatabaseSpec, paths: InstancePaths, template: string): Promise<PreparedDir> {
  const { runAs } = parts;
  const warm = await claimWarmInstance(parts, spec, paths);
  // A warm instance's copy was flushed before it joined the pool.
  if (warm) return { source: "warm", warm };
  await ensureOwnedDir(paths.dir, runAs, 0o700);
  const marker = (await readIfExists(paths.projectMarker))?.trim();
  if (marker !== undefined && marker !== spec.projectId) throw slugTaken(spec.slug);
  if (marker === undefined) await writeOwnedFile(paths.projectMarker, `${spec.projectId}\n`, runAs, 0o600);
  return prepareDataDir({
    slug: spec.slug,
    paths,
    template,
    major: parts.binaries.postgres.major,
    runAs,
    logger: parts.logger,
    takeSpare: () => parts.spares.take(),
  });
}
