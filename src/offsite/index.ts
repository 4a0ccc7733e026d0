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
import { S3ObjectStore } from "./object-store.js";

export { OffsiteCopies, type OffsiteHooks } from "./offsite-copies.js";
export type { OffsiteConfig } from "./offsite-config.js";

export interface OffsiteService {
  readonly copies: OffsiteCopies;
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
  const copies = new OffsiteCopies({
    objects,
    prefix: options.config.prefix,
    keyring: options.keyring,
    store: options.store,
    runtime: options.runtime,
    metrics: options.metrics.offsite,
    logger: options.logger,
    localFile: options.localFile,
    // Beside the backups (same file system: a fetched copy is renamed into place); no slug starts with ".".
    tempDir: join(options.backupDir, ".offsite-tmp"),
    syncIntervalMs: options.config.syncIntervalMs,
    isLeader: options.isLeader,
  });
  return {
    copies,
    async close() {
      await copies.close();
      objects.close();
    },
  };
}
