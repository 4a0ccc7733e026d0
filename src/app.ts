// Composition: config → parts (store, keyring, runtime, backups, service) →
// server. main.ts runs it as a process; tests and benchmarks run it in-process.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadKeyring } from "./secrets/key-file.js";
import { Sealer } from "./secrets/sealer.js";
import { openStateStore } from "./store/open-store.js";
import { openCoordination } from "./coordination/open-coordination.js";
import { createBackupManager, type BackupManager } from "./backup/index.js";
import { backupFilePath } from "./backup/backup-paths.js";
import { BucketRecovery } from "./backup/bucket-recovery.js";
import { createOffsiteCopies, type OffsiteService } from "./offsite/index.js";
import { backupDownloadRoute } from "./server/backup-download-route.js";
import type { Config } from "./config.js";
import { createLogger, type Logger } from "./log.js";
import { Metrics } from "./metrics.js";
import { runtimeDriver } from "./runtime/registry.js";
import type { Runtime } from "./runtime/runtime.js";
import type { Store } from "./store/store.js";
import { DatabaseService } from "./service/database-service.js";
import { ApiServer } from "./server/http-server.js";
import { databaseRoutes } from "./server/database-routes.js";
import { healthRoutes } from "./server/health-routes.js";
import { reflectionRoutes } from "./server/reflection-routes.js";
import { authInterceptor, errorInterceptor, metricsInterceptor } from "./server/interceptors.js";
import { readiness } from "./server/readiness.js";
import { TokenRegistry, adminTokenEntry, readTokensFile } from "./server/tokens.js";
import { lockDataDir } from "./store/data-dir-lock.js";
import { openToOthers, securePrivateFiles, securePrivateTree } from "./store/private-files.js";

export interface App {
  readonly address: { host: string; port: number };
  readonly url: string;
  readonly service: DatabaseService;
  readonly runtime: Runtime;
  readonly store: Store;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Set when the embedded default generated an admin token file. */
  readonly adminTokenFile?: string;
  close(): Promise<void>;
}

export interface AppOptions {
  readonly logger?: Logger;
  /** Resume known databases before answering (default true). */
  readonly resume?: boolean;
  /** Collect Node's default process metrics (off in tests that start many apps). */
  readonly defaultMetrics?: boolean;
}

/**
 * Holds the data dir's lock for the app's life: a second service on the same
 * data dir fails here (DataDirInUseError) before it touches anything.
 */
export async function startApp(config: Config, options: AppOptions = {}): Promise<App> {
  const lock = lockDataDir(config.dataDir);
  try {
    const app = await startLocked(config, options);
    return {
      ...app,
      async close() {
        await app.close();
        lock.release();
      },
    };
  } catch (error) {
    lock.release();
    throw error;
  }
}

async function startLocked(config: Config, options: AppOptions): Promise<App> {
  const logger = options.logger ?? createLogger({ level: config.logLevel });
  securePrivateFiles(config.dataDir);
  securePrivateTree(config.backup.dir);
  for (const file of [config.masterKeyFile, config.tokensFile, config.tls?.keyFile]) {
    if (file && openToOthers(file)) logger.warn({ file }, "other OS users may read this file: chmod 600 it");
  }
  const metrics = new Metrics({ defaultMetrics: options.defaultMetrics ?? true });

  const { keyring, createdFile } = loadKeyring({
    ...(config.masterKeys ? { keys: config.masterKeys } : {}),
    file: config.masterKeyFile,
    createIfMissing: config.masterKeyFileIsDefault,
  });
  if (createdFile) logger.warn({ file: createdFile }, "created a new master key file; back it up: sealed connection strings cannot be opened without it");

  const tokens = config.tokensFile ? readTokensFile(config.tokensFile) : undefined;
  const adminTokenFile = tokens ? undefined : join(config.dataDir, "admin.token");
  const registry = new TokenRegistry(tokens ?? [adminTokenEntry(adminTokenFile!).entry]);

  const store = await openStateStore({ dataDir: config.dataDir, ...(config.stateUrl ? { stateUrl: config.stateUrl } : {}) });
  metrics.countDatabasesWith(() => store.countDatabasesByState());
  const driver = runtimeDriver(config.runtime);
  // Replicas sharing a PostgreSQL state agree through it: per-project locks and the schedule's leader.
  const coordination = await openCoordination({ ...(config.stateUrl ? { stateUrl: config.stateUrl } : {}), logger });
  let runtime: Runtime | undefined;
  let backups: BackupManager | undefined;
  let offsite: OffsiteService | undefined;
  try {
    // Its databases are children on this host: a second replica could neither run nor reach them.
    if (driver.hostBound) await coordination.holdExclusively(`${config.runtime} runtime`);
    runtime = await driver.create({ config, ports: store, logger });
    metrics.watchPoolerPorts(runtime);
    metrics.watchOutOfMemory(runtime);
    if (config.backup.offsite) {
      offsite = createOffsiteCopies({
        config: config.backup.offsite,
        keyring,
        store,
        runtime,
        metrics,
        logger: logger.child({ component: "offsite" }),
        backupDir: config.backup.dir,
        localFile: (record) => backupFilePath(config.backup.dir, record.slug, record.id, record.format),
        // One copier for a shared state and bucket: the replica that leads the schedule.
        isLeader: () => coordination.isLeader(),
      });
    }
    backups = await createBackupManager({
      store,
      runtime,
      metrics,
      logger: logger.child({ component: "backup" }),
      dir: config.backup.dir,
      retentionDays: config.backup.retentionDays,
      deletedRetentionDays: config.backup.deletedRetentionDays,
      schedule: { cron: config.backup.schedule, concurrency: config.backup.concurrency, verify: config.backup.verify },
      ...(config.backup.manualLimit ? { manualLimit: config.backup.manualLimit } : {}),
      loadConcurrency: config.backup.loadConcurrency,
      minFree: config.backup.minFree,
      ...(driver.scratchDir ? { scratchDir: driver.scratchDir(config) } : {}),
      coordination,
      ...(offsite ? { offsite: offsite.copies } : {}),
    });
    const service = new DatabaseService({
      runtime,
      store,
      sealer: new Sealer(keyring),
      logger,
      metrics,
      backups,
      coordination,
      sizeQuotaMb: config.sizeQuotaMb,
      // Ensure of a project with no record looks in the bucket first (disaster recovery), unless switched off.
      ...(offsite && config.backup.offsite?.recoverOnEnsure !== false
        ? {
            recovery: new BucketRecovery({
              offsite: offsite.recovery,
              runtime,
              store,
              dir: config.backup.dir,
              retentionDays: config.backup.retentionDays,
              logger: logger.child({ component: "recovery" }),
            }),
          }
        : {}),
    });
    metrics.watchDatabases(() => service.figuresOfAll());
    const ready = readiness(store, runtime);
    const server = new ApiServer({
      routes: [databaseRoutes(service), healthRoutes(ready), reflectionRoutes()],
      interceptors: [metricsInterceptor(metrics), errorInterceptor(logger), authInterceptor(registry)],
      readiness: ready,
      metrics,
      logger,
      tokens: registry,
      limits: config.http,
      extraRoutes: backupDownloadRoute({ tokens: registry, service, logger, metrics }),
      ...(config.tls ? { tls: { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) } } : {}),
    });
    if (options.resume ?? true) await service.resume();
    // After resume: un-pauses what a killed restore left paused, starts the schedule and catch-up.
    backups.start();
    await offsite?.copies.start();
    const address = await server.listen(config.listen.host, config.listen.port);
    const host = address.host.includes(":") ? `[${address.host}]` : address.host;
    logger.info({ address: `${host}:${address.port}`, runtime: runtime.kind, ...(adminTokenFile ? { adminTokenFile } : {}) }, "sota-db listening");
    const started = runtime;
    const startedBackups = backups;
    const startedOffsite = offsite;
    return {
      address,
      url: `${config.tls ? "https" : "http"}://${host}:${address.port}`,
      service,
      runtime: started,
      store,
      metrics,
      logger,
      ...(adminTokenFile ? { adminTokenFile } : {}),
      async close() {
        await server.close();
        await startedBackups.close();
        await startedOffsite?.close();
        await started.close();
        await coordination.close();
        await store.close();
        logger.info("sota-db stopped");
      },
    };
  } catch (error) {
    await backups?.close().catch(() => undefined);
    await offsite?.close().catch(() => undefined);
    await runtime?.close().catch(() => undefined);
    await coordination.close();
    await store.close();
    throw error;
  }
}
