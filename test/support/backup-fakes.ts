// A Runtime whose dump is whatever the test hands it, for backup tests that
// are about files, records, clocks and concurrency rather than PostgreSQL.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { createBackupManager, type BackupManager, type BackupManagerOptions } from "../../src/backup/index.js";
import { createLogger, type Logger } from "../../src/log.js";
import { Metrics } from "../../src/metrics.js";
import type { EnsureResult, Runtime, RuntimeStatus, RuntimeTarget } from "../../src/runtime/runtime.js";
import type { DatabaseRecord } from "../../src/store/records.js";
import { SqliteStore } from "../../src/store/sqlite-store.js";

export class FakeDumpRuntime implements Runtime {
  readonly kind = "process";
  /** Every dump requested, in order. */
  readonly dumps: RuntimeTarget[] = [];
  dumpWith: (target: RuntimeTarget) => Readable = () => Readable.from([sqlText(10)]);

  dump(target: RuntimeTarget): Readable {
    this.dumps.push(target);
    return this.dumpWith(target);
  }

  ensure(): Promise<EnsureResult> {
    return unsupported();
  }
  status(): Promise<RuntimeStatus> {
    return unsupported();
  }
  restore(_target: RuntimeTarget, _sql: Readable, _database?: string): Promise<void> {
    return unsupported();
  }
  adminQuery(_target: RuntimeTarget, _sql: string, _database?: string): Promise<Record<string, string | null>[]> {
    return unsupported();
  }
  appQuery(_target: RuntimeTarget, _sql: string, _database?: string): Promise<Record<string, string | null>[]> {
    return unsupported();
  }
  poolerCommand(_target: RuntimeTarget, _command: string): Promise<Record<string, string | null>[]> {
    return unsupported();
  }
  remove(): Promise<void> {
    return unsupported();
  }
  async ping(): Promise<void> {}
  async close(): Promise<void> {}
}

function unsupported(): Promise<never> {
  return Promise.reject(new Error("not part of this fake runtime"));
}

/** Plain SQL that compresses like a real dump does. */
export function sqlText(rows: number): string {
  let text = "CREATE TABLE items (id integer, name text);\n";
  for (let i = 0; i < rows; i++) text += `INSERT INTO items VALUES (${i}, 'item ${i}');\n`;
  return text;
}

/** A dump the test feeds and ends (or breaks) by hand. */
export function controlledDump(): PassThrough {
  return new PassThrough();
}

export class TestClock {
  constructor(private current: Date) {}
  now = (): Date => new Date(this.current);
  advanceDays(days: number): void {
    this.current = new Date(this.current.getTime() + days * 24 * 60 * 60 * 1000);
  }
  set(at: Date): void {
    this.current = new Date(at);
  }
}

export interface ManagerBed {
  readonly dir: string;
  readonly backupDir: string;
  readonly store: SqliteStore;
  readonly runtime: FakeDumpRuntime;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly logLines: string[];
  open(overrides?: Partial<BackupManagerOptions>): Promise<BackupManager>;
  cleanup(): Promise<void>;
}

export async function managerBed(): Promise<ManagerBed> {
  const dir = await mkdtemp(join(tmpdir(), "sota-backup-"));
  const store = new SqliteStore(join(dir, "state.db"));
  const runtime = new FakeDumpRuntime();
  const metrics = new Metrics({ defaultMetrics: false });
  const logLines: string[] = [];
  const logger = createLogger({ level: "debug", destination: { write: (line: string) => void logLines.push(line) } });
  const managers: BackupManager[] = [];
  const bed: ManagerBed = {
    dir,
    backupDir: join(dir, "backups"),
    store,
    runtime,
    metrics,
    logger,
    logLines,
    async open(overrides = {}) {
      const manager = await createBackupManager({ store, runtime, metrics, logger, dir: bed.backupDir, retentionDays: 7, ...overrides });
      managers.push(manager);
      return manager;
    },
    async cleanup() {
      for (const manager of managers) await manager.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return bed;
}

export function databaseRecord(projectId: string, slug: string, createdAt: Date): DatabaseRecord {
  return {
    projectId,
    slug,
    state: "ready",
    runtime: "process",
    sealedPassword: "sealed",
    sealedUrl: "sealed",
    host: "127.0.0.1",
    port: 1,
    network: null,
    postgresVersion: "17",
    pooler: null,
    error: null,
    createdAt,
    updatedAt: createdAt,
  };
}

/** The value of one sample of a metric, as Prometheus would scrape it. */
export async function metricValue(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((entry) => entry.name === name);
  const sample = metric?.values.find((value) => Object.entries(labels).every(([key, wanted]) => String(value.labels[key]) === wanted));
  return sample?.value;
}
