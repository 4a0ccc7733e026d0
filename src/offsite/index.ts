// Off-host copies' public face: the copier built from SOTA_BACKUP_S3_*, on
// the official AWS SDK, for app.ts to hand to the backup manager.
import { join } from "node:path";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { Runtime } from "../runtime/runtime.js";
import type { Keyring } from "../secrets/keyring.js";
import type { BackupRecord } from "../store/records.js";
import type { Store } from "../store/store.js";
import type { OffsiteConfig } from "./offsite-config.js";
import { OffsiteCopies } from "./offsite-copies.js";
import { OffsiteRecovery } from "./offsite-recovery.js";
import { S3ObjectStore } from "./object-store.js";

export { OffsiteCopies, type OffsiteHooks } from "./offsite-copies.js";
export { OffsiteRecovery, projectsInBucket } from "./offsite-recovery.js";
export type { ManifestBackup, ProjectManifest } from "./manifest.js";
export type { OffsiteConfig } from "./offsite-config.js";

export interface OffsiteService {
  readonly copies: OffsiteCopies;
  /** Reading projects back from the bucket (disaster recovery). */
  readonly recovery: OffsiteRecovery;
  close(): Promise<void>;
}

export function createOffsiteCopies(options: {
  readonly config: OffsiteConfig;
  readonly keyring: Keyring;
  readonly store: Store;
  readonly runtime: Runtime;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly backupDir: string;
  readonly localFile: (record: BackupRecord) => string;
  readonly isLeader: () => boolean;
}): OffsiteService {
  const objects = new S3ObjectStore(options.config);
  // Beside the backups (same file system: a fetched copy is renamed into place); no slug starts with ".".
  const tempDir = join(options.backupDir, ".offsite-tmp");
  const copies = new OffsiteCopies({
    objects,
    prefix: options.config.prefix,
    keyring: options.keyring,
    store: options.store,
    runtime: options.runtime,
    metrics: options.metrics.offsite,
    logger: options.logger,
    localFile: options.localFile,
    tempDir,
    syncIntervalMs: options.config.syncIntervalMs,
    isLeader: options.isLeader,
  });
  const recovery = new OffsiteRecovery({
    objects,
    prefix: options.config.prefix,
    keyring: options.keyring,
    tempDir,
    metrics: options.metrics.offsite,
    logger: options.logger,
  });
  return {
    copies,
    recovery,
    async close() {
      await copies.close();
      objects.close();
    },
  };
}
