// How much disk a backup, verification or restore is about to take, for the
// free-space check before it starts. Estimates, not promises: what matters is
// that a flood of them is stopped while the disk still has its reserve.
import type { Runtime, RuntimeTarget } from "../runtime/runtime.js";
import type { BackupRecord } from "../store/records.js";
import type { Store } from "../store/store.js";
import { newestSucceeded } from "./retention.js";
import { quoteLiteral } from "./sql-text.js";

/** A new dump is about as big as the project's last good one; the first, at most its database's size. */
export async function backupBytes(store: Store, runtime: Runtime, target: RuntimeTarget): Promise<number> {
  return newestSucceeded(await store.listBackups(target.projectId), "dump")?.sizeBytes ?? (await databaseBytes(runtime, target));
}

/** A new base backup is about as big as the last good one; the first, at least its database's size (the whole server is more, compressed less). */
export async function baseBackupBytes(store: Store, runtime: Runtime, target: RuntimeTarget): Promise<number> {
  return newestSucceeded(await store.listBackups(target.projectId), "base")?.sizeBytes ?? (await databaseBytes(runtime, target));
}

/** A scratch copy takes about what the live database takes, and never less than the compressed file. */
export async function scratchCopyBytes(runtime: Runtime, target: RuntimeTarget, record: BackupRecord): Promise<number> {
  return Math.max(await databaseBytes(runtime, target), record.sizeBytes ?? 0);
}

/** The live database's size on disk; 0 when the server cannot say (the work itself then fails with its own error). */
async function databaseBytes(runtime: Runtime, target: RuntimeTarget): Promise<number> {
  try {
    // Catalog names qualified: this runs as the superuser, in the maintenance database.
    const [row] = await runtime.adminQuery(
      target,
      `SELECT pg_catalog.pg_database_size(d.oid)::text AS bytes FROM pg_catalog.pg_database d WHERE d.datname = ${quoteLiteral(target.slug)}`,
    );
    return Number(row?.["bytes"] ?? 0) || 0;
  } catch {
    return 0;
  }
}
