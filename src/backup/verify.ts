// Verification: a backup is only as good as its restore. Load it into a
// scratch database on the project's own server (same PostgreSQL version,
// same roles, same database properties), check that it loaded, drop it, and
// keep the outcome on the backup record.
import { loggableError, type Logger } from "../log.js";
import type { Runtime, RuntimeTarget } from "../runtime/runtime.js";
import type { BackupRecord } from "../store/records.js";
import { failureReason } from "./backup-errors.js";
import { loadBackupFile } from "./backup-loader.js";
import { createScratchLike, dropDatabase, dropLeftoverScratch, scratchName } from "./scratch-database.js";

export interface VerifyContext {
  readonly runtime: Runtime;
  readonly logger: Logger;
  readonly scratchInUse: Set<string>;
}

export interface VerifyOutcome {
  readonly passed: boolean;
  /** Why it failed; safe to show. */
  readonly error: string | null;
}

export async function verifyBackupLoads(context: VerifyContext, target: RuntimeTarget, record: BackupRecord, path: string): Promise<VerifyOutcome> {
  const { runtime, logger } = context;
  const scratch = scratchName("verify");
  context.scratchInUse.add(scratch);
  try {
    await dropLeftoverScratch(runtime, target, context.scratchInUse).catch(() => undefined);
    await createScratchLike(runtime, target, scratch);
    await loadBackupFile(runtime, target, path, scratch, { sha256: record.sha256 ?? "", sizeBytes: record.sizeBytes ?? -1 });
    // The load stopping at the first error is the real test; this proves the
    // server can read what was written. As the app role: the copy carries the
    // tenant's database settings, and a superuser has no business in it.
    await runtime.appQuery(target, "SELECT pg_catalog.count(*) AS relations FROM pg_catalog.pg_class", scratch);
    return { passed: true, error: null };
  } catch (error) {
    logger.error({ projectId: target.projectId, slug: target.slug, backupId: record.id, err: loggableError(error) }, "backup verification failed");
    return { passed: false, error: failureReason(error) };
  } finally {
    await dropDatabase(runtime, target, scratch).catch((error: unknown) =>
      logger.warn({ projectId: target.projectId, backupId: record.id, err: loggableError(error) }, "could not drop the verification database"),
    );
    context.scratchInUse.delete(scratch);
  }
}
