// A process driver opened directly, without the service around it, on a
// throwaway data dir: rows that measure the driver itself use it.
import { randomBytes, randomUUID } from "node:crypto";
import { chmod, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { createLogger } from "../src/log.js";
import { createProcessRuntime, type ProcessRuntime } from "../src/runtime/process/index.js";
import type { DatabaseSpec, EnsureResult } from "../src/runtime/runtime.js";
import { removeDataDir } from "../test/support/data-dir-cleanup.js";
import { MemoryPortRegistry } from "../test/support/memory-port-registry.js";

export interface DirectRuntime {
  readonly runtime: ProcessRuntime;
  readonly dataDir: string;
  close(): Promise<void>;
}

export interface DirectRuntimeReserves {
  /** SOTA_WARM_POOL's equivalent (default 0). */
  readonly warmPool?: number;
  /** SOTA_SPARE_COPIES's equivalent (default 0 here; the service's default is 1). */
  readonly spareCopies?: number;
}

export async function openDirectRuntime(ports: { min: number; max: number }, reserves: DirectRuntimeReserves = {}): Promise<DirectRuntime> {
  const dataDir = await mkdtemp(join(tmpdir(), "sota-bench-driver-"));
  await chmod(dataDir, 0o711);
  const runtime = await createProcessRuntime({
    dataDir,
    ports: new MemoryPortRegistry(),
    portRange: ports,
    readyTimeoutMs: 60_000,
    warmPool: reserves.warmPool ?? 0,
    spareCopies: reserves.spareCopies ?? 0,
    logger: createLogger({ level: "silent" }),
  });
  return {
    runtime,
    dataDir,
    async close() {
      await runtime.close();
      await removeDataDir(dataDir);
    },
  };
}

export function newSpec(prefix: string): DatabaseSpec {
  return { projectId: randomUUID(), slug: `${prefix}-${randomBytes(4).toString("hex")}`, password: randomBytes(16).toString("hex") };
}

/** A connection string as the service would build it, for the app's own first query. */
export function appUrl(spec: DatabaseSpec, result: EnsureResult): string {
  const { host, port } = result.endpoint.loopback ?? result.endpoint;
  return `postgresql://app_${spec.slug}:${spec.password}@${host}:${port}/${spec.slug}?sslmode=disable`;
}

/** What an app does first with its DATABASE_URL: connect through PgBouncer and run a query. */
export async function firstAppQuery(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  client.on("error", () => undefined);
  try {
    await client.connect();
    await client.query("SELECT 1");
  } finally {
    await client.end().catch(() => undefined);
  }
}
