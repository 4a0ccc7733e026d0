// Ensure of a project this service has no record of, when object storage is
// configured: the bucket may hold it (the host it lived on is gone). Asked
// only for a project with no record at all, so the deploy engine's ordinary
// Ensure of a known project costs nothing more.
//
// What the bucket holds decides:
// - nothing: Ensure makes a new database, as always;
// - a live database: it comes back (see backup/bucket-recovery.ts) under the
//   same slug, with the same password (sealed with the master key in the
//   manifest) and the same pooler port: the same DATABASE_URL;
// - a deleted database: its record comes back deleted, with its backups, and
//   Ensure makes a new database in its place, as on the lost host.
// A bucket that does not answer fails the Ensure (unavailable) with nothing
// made: an empty database under the project now would stand in the way of
// the recovery once the bucket answers again. A recovery that fails leaves
// nothing either (no record, no database, no fetched file).
import { DomainError, kindOf } from "../errors.js";
import { loggableError, type Logger } from "../log.js";
import type { DisasterRecovery } from "../backup/bucket-recovery.js";
import type { ProjectManifest } from "../offsite/index.js";
import type { EnsureResult, Runtime } from "../runtime/runtime.js";
import { SealError, type Sealer } from "../secrets/sealer.js";
import { newDatabaseRecord, type DatabaseRecord, type LimitsRecord } from "../store/records.js";
import { slugTaken, type Store } from "../store/store.js";
import { slugProblemFor } from "../names.js";
import { applyLimitsChange, checkLimitsChange, runtimeLimits, type LimitsChange } from "./limits-override.js";

export interface BucketEnsureDeps {
  readonly recovery: DisasterRecovery;
  readonly runtime: Runtime;
  readonly store: Store;
  readonly sealer: Sealer;
  readonly logger: Logger;
}

export type FromBucket =
  /** The bucket holds nothing of the project: make a new database. */
  | { readonly kind: "none" }
  /** The project's database had been deleted: its record (deleted) and backups are back; make a new database. */
  | { readonly kind: "deleted"; readonly record: DatabaseRecord }
  /** The database is back and running; record it ready. */
  | { readonly kind: "recovered"; readonly record: DatabaseRecord; readonly result: EnsureResult; readonly password: string };

/** Called under the project's lock, for a project with no record. */
export async function ensureFromBucket(deps: BucketEnsureDeps, projectId: string, requestedSlug: string | undefined, signal?: AbortSignal): Promise<FromBucket> {
  const manifest = await lookUp(deps, projectId);
  const database = manifest?.database;
  if (!manifest || !database) return { kind: "none" };
  const slug = database.slug;
  const problem = slugProblemFor(projectId, slug);
  if (problem) throw new DomainError("data_loss", `the off-host manifest of project ${projectId} names a slug this service refuses (${problem}); nothing was created`);
  if (requestedSlug && requestedSlug !== slug) {
    throw new DomainError("failed_precondition", `object storage holds database "${slug}" of project ${projectId}; a database's slug cannot change: ensure it without a slug, or as "${slug}"`);
  }
  const owner = await deps.store.getDatabaseBySlug(slug);
  if (owner && owner.projectId !== projectId) {
    throw new DomainError(
      "already_exists",
      `object storage holds database "${slug}" of project ${projectId}, but that slug belongs to project ${owner.projectId} on this service; nothing was created (recover every project before making new ones: sota-db offsite recover --all)`,
    );
  }
  const createdAt = new Date(database.createdAt);
  const limits = limitsOf(projectId, database.limits);

  if (database.state === "deleted") {
    const record: DatabaseRecord = { ...newDatabaseRecord({ projectId, slug, runtime: deps.runtime.kind, sealedPassword: "" }, createdAt), state: "deleted", updatedAt: new Date(manifest.writtenAt) };
    await insert(deps, record);
    try {
      await deps.recovery.adopt(manifest, slug);
    } catch (error) {
      await undo(deps, manifest, record, true);
      throw nothingCreated(error);
    }
    deps.logger.info({ projectId, slug }, "a deleted database's record and backups brought back from object storage");
    return { kind: "deleted", record };
  }

  if (database.runtime !== deps.runtime.kind) {
    throw new DomainError(
      "failed_precondition",
      `object storage holds database "${slug}" of project ${projectId} from the ${database.runtime} runtime, but this service runs the ${deps.runtime.kind} runtime; nothing was created`,
    );
  }
  const password = openPassword(deps.sealer, database.sealedPassword, projectId);
  const record: DatabaseRecord = {
    ...newDatabaseRecord({ projectId, slug, runtime: deps.runtime.kind, sealedPassword: database.sealedPassword }, createdAt),
    ...(limits ? { limits } : {}),
  };
  deps.logger.warn({ projectId, slug }, "this service has no record of the project, but object storage holds its database: bringing it back");
  // Recorded only once the data is back: a service killed meanwhile leaves no record, so the next
  // Ensure looks in the bucket again (a record without data would make an empty database under the
  // bucket's URL). The off-host records come after the database's: the copier deletes from the bucket
  // what the records of a project with no database name.
  let inserted = false;
  try {
    const enforced = runtimeLimits(limits);
    const spec = { projectId, slug, password, ...(enforced ? { limits: enforced } : {}), ...(database.port !== null ? { port: database.port } : {}) };
    const { result } = await deps.recovery.bringBack(spec, manifest, signal);
    await insert(deps, record);
    inserted = true;
    await deps.recovery.adopt(manifest, slug);
    return { kind: "recovered", record, result, password };
  } catch (error) {
    await undo(deps, manifest, record, inserted);
    throw nothingCreated(error);
  }
}

async function lookUp(deps: BucketEnsureDeps, projectId: string): Promise<ProjectManifest | undefined> {
  try {
    return await deps.recovery.find(projectId);
  } catch (error) {
    const kind = kindOf(error);
    const reason = error instanceof DomainError ? error.message : "see the service log";
    if (kind === "unavailable") {
      throw new DomainError(
        "unavailable",
        `project ${projectId} has no database on this service, and object storage, which may hold it (disaster recovery), did not answer (${reason}); nothing was created. Try again once it answers; if the bucket is gone for good, set SOTA_BACKUP_S3_RECOVER_ON_ENSURE=false`,
      );
    }
    throw new DomainError(kind, `project ${projectId} has no database on this service, and what object storage holds for it cannot be used (${reason}); nothing was created`);
  }
}

async function insert(deps: BucketEnsureDeps, record: DatabaseRecord): Promise<void> {
  // A slug another project took meanwhile: the store's SlugTakenError (already_exists) says so.
  await deps.store.insertDatabase(record).catch((error: unknown) => {
    if (error instanceof DomainError && error.kind === "already_exists") throw slugTaken(record.slug);
    throw error;
  });
}

/** The bucket's password opens only with the master key that sealed it, for this project only. */
function openPassword(sealer: Sealer, sealed: string, projectId: string): string {
  try {
    return sealer.open(sealed, projectId);
  } catch (error) {
    if (!(error instanceof SealError)) throw error;
    throw new DomainError(
      "data_loss",
      `the password object storage holds for project ${projectId} does not open (${error.message}): configure the master key the lost host used (SOTA_MASTER_KEY or its key file); nothing was created`,
    );
  }
}

/** The manifest's limits override, checked as an UpdateDatabase's would be. */
function limitsOf(projectId: string, raw: unknown): LimitsRecord | null {
  if (raw === null || raw === undefined) return null;
  const change: Record<string, number> = {};
  if (typeof raw === "object" && !Array.isArray(raw)) {
    for (const field of ["memoryMb", "cpus", "pids", "shmMb", "sizeQuotaMb"] as const) {
      const value = (raw as Record<string, unknown>)[field];
      if (typeof value === "number") change[field] = value;
    }
  }
  try {
    checkLimitsChange(change as LimitsChange);
  } catch {
    throw new DomainError("data_loss", `the off-host manifest of project ${projectId} holds limits out of range; nothing was created`);
  }
  return applyLimitsChange(null, change as LimitsChange);
}

/**
 * What a failed recovery leaves: nothing (the fetched files, the records,
 * the runtime's remains). The database's record goes last, whatever else
 * fails: kept, the next Ensure would make an empty database under the
 * bucket's URL; the off-host records go first (see OffsiteCopies' retention).
 */
async function undo(deps: BucketEnsureDeps, manifest: ProjectManifest, record: DatabaseRecord, inserted: boolean): Promise<void> {
  const { projectId, slug } = record;
  const steps = [
    () => deps.recovery.forget(manifest, slug),
    () => (record.state === "deleted" ? Promise.resolve() : deps.runtime.remove({ projectId, slug }, { keepData: false })),
    () => (inserted ? deps.store.deleteDatabase(projectId).then(() => undefined) : Promise.resolve()),
  ];
  for (const step of steps) {
    await step().catch((error: unknown) =>
      deps.logger.error({ projectId, slug, err: loggableError(error) }, "could not remove what a failed recovery from object storage left"),
    );
  }
}

function nothingCreated(error: unknown): DomainError {
  const problem = error instanceof DomainError ? error.message : "see the service log";
  return new DomainError(kindOf(error), `${problem}; nothing was created`);
}
