// One real PostgreSQL + PgBouncer (process driver) with a BackupManager over
// it, for the backup tests that need a server; shared by all tests of a file.
import { randomBytes, randomUUID } from "node:crypto";
import { join } from "node:path";
import pg from "pg";
import { createBackupManager, type BackupManager, type BackupManagerOptions } from "../../src/backup/index.js";
import { Metrics } from "../../src/metrics.js";
import type { ProcessRuntime } from "../../src/runtime/process/index.js";
import { instancePaths } from "../../src/runtime/process/instance-paths.js";
import type { RuntimeTarget } from "../../src/runtime/runtime.js";
import { SqliteStore } from "../../src/store/sqlite-store.js";
import { processTestBed, removeDataDir, type ProcessTestBed } from "./process-runtime-harness.js";

export interface BackupServer {
  readonly bed: ProcessTestBed;
  readonly runtime: ProcessRuntime;
  readonly store: SqliteStore;
  readonly metrics: Metrics;
  readonly manager: BackupManager;
  readonly backupDir: string;
  readonly target: RuntimeTarget;
  readonly password: string;
  /** The pooler on loopback: the DATABASE_URL's host and port. */
  readonly pooler: { readonly host: string; readonly port: number };
  /** PostgreSQL's unix socket directory, for psql as the superuser. */
  readonly socketDir: string;
  /** A client exactly as an app with the DATABASE_URL connects: app role, through PgBouncer. */
  appClient(): pg.Client;
  appQuery<T extends pg.QueryResultRow = Record<string, unknown>>(sql: string, values?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

export async function startBackupServer(portRangeOffset: number, slug: string, overrides: Partial<BackupManagerOptions> = {}): Promise<BackupServer> {
  const bed = await processTestBed(portRangeOffset);
  const runtime = await bed.open();
  const target = { projectId: randomUUID(), slug };
  const password = randomBytes(16).toString("hex");
  try {
    const ensured = await runtime.ensure({ ...target, password });
    const pooler = ensured.endpoint.loopback ?? { host: ensured.endpoint.host, port: ensured.endpoint.port };
    const store = new SqliteStore(join(bed.dataDir, "state.db"));
    const metrics = new Metrics({ defaultMetrics: false });
    const backupDir = join(bed.dataDir, "backups");
    const manager = await createBackupManager({
      store,
      runtime,
      metrics,
      logger: bed.logs.logger,
      dir: backupDir,
      retentionDays: 7,
      pauseGraceMs: 1_000,
      ...overrides,
    });
    const appClient = (): pg.Client => {
      const client = new pg.Client({ host: pooler.host, port: pooler.port, user: `app_${slug}`, password, database: slug });
      client.on("error", () => undefined);
      return client;
    };
    return {
      bed,
      runtime,
      store,
      metrics,
      manager,
      backupDir,
      target,
      password,
      pooler,
      socketDir: instancePaths(bed.dataDir, slug).socketDir,
      appClient,
      async appQuery<T extends pg.QueryResultRow>(sql: string, values?: unknown[]): Promise<T[]> {
        const client = appClient();
        await client.connect();
        try {
          return (await client.query<T>(sql, values)).rows;
        } finally {
          await client.end();
        }
      },
      async close() {
        await manager.close();
        await runtime.close();
        store.close();
        await removeDataDir(bed.dataDir);
      },
    };
  } catch (error) {
    await runtime.close();
    await removeDataDir(bed.dataDir);
    throw error;
  }
}
