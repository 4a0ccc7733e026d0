// Backups through the service's real front door: DatabaseService, the REST
// paths and the download route on the one-port ApiServer, composed the way
// app.ts composes them, over a real PostgreSQL + PgBouncer.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBackupManager, type BackupManager } from "../../src/backup/index.js";
import { Metrics } from "../../src/metrics.js";
import { Keyring, masterKey } from "../../src/secrets/keyring.js";
import { Sealer } from "../../src/secrets/sealer.js";
import { backupDownloadRoute } from "../../src/server/backup-download-route.js";
import { databaseRoutes } from "../../src/server/database-routes.js";
import { ApiServer } from "../../src/server/http-server.js";
import { authInterceptor, errorInterceptor, metricsInterceptor } from "../../src/server/interceptors.js";
import { readiness } from "../../src/server/readiness.js";
import { hashToken, TokenRegistry } from "../../src/server/tokens.js";
import { DatabaseService } from "../../src/service/database-service.js";
import type { ProcessRuntime } from "../../src/runtime/process/index.js";
import { SqliteStore } from "../../src/store/sqlite-store.js";
import { processTestBed, removeDataDir, type ProcessTestBed } from "../support/process-runtime-harness.js";

let bed: ProcessTestBed;
let runtime: ProcessRuntime;
let store: SqliteStore;
let backups: BackupManager;
let service: DatabaseService;
let server: ApiServer;
let base: string;
let workDir: string;
const metrics = new Metrics({ defaultMetrics: false });
const projectId = randomUUID();
const otherProjectId = randomUUID();
const tokens = { admin: `adm_${randomBytes(16).toString("hex")}`, project: `prj_${randomBytes(16).toString("hex")}` };

beforeAll(async () => {
  bed = await processTestBed(9);
  runtime = await bed.open();
  workDir = await mkdtemp(join(tmpdir(), "sota-backup-api-"));
  store = new SqliteStore(join(workDir, "state.db"));
  const logger = bed.logs.logger;
  const registry = new TokenRegistry([
    { name: "ops", role: "admin", sha256: hashToken(tokens.admin) },
    { name: "customer", role: "project", projectId, sha256: hashToken(tokens.project) },
  ]);
  // The composition app.ts is asked to use.
  backups = await createBackupManager({
    store,
    runtime,
    metrics,
    logger,
    dir: join(workDir, "backups"),
    retentionDays: 7,
    schedule: { cron: "0 3 * * *", concurrency: 2, verify: false },
  });
  service = new DatabaseService({ runtime, store, sealer: new Sealer(new Keyring([masterKey(randomBytes(32))])), logger, metrics, backups });
  server = new ApiServer({
    routes: [databaseRoutes(service)],
    interceptors: [metricsInterceptor(metrics), errorInterceptor(logger), authInterceptor(registry)],
    readiness: readiness(store, runtime),
    metrics,
    logger,
    extraRoutes: backupDownloadRoute({ tokens: registry, service, logger, metrics }),
  });
  await service.resume();
  backups.start();
  const address = await server.listen("127.0.0.1", 0);
  base = `http://127.0.0.1:${address.port}`;
});

afterAll(async () => {
  await server?.close();
  await backups?.close();
  await runtime?.close();
  store?.close();
  if (workDir) await rm(workDir, { recursive: true, force: true });
  if (bed) await removeDataDir(bed.dataDir);
});

async function rest(path: string, options: { method?: string; token?: string } = {}): Promise<{ status: number; json: any }> {
  const response = await fetch(`${base}${path}`, {
    method: options.method ?? "GET",
    headers: { authorization: `Bearer ${options.token ?? tokens.project}` },
  });
  const text = await response.text();
  return { status: response.status, json: text && response.headers.get("content-type")?.includes("json") ? JSON.parse(text) : text };
}

async function app<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: service.connection(projectId).url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

describe("backups over REST", () => {
  it("create, list, restore, verify and download, as the seed's curl lines do", async () => {
    expect((await rest(`/v1/projects/${projectId}/database`, { method: "POST" })).status).toBe(200);
    await app((c) => c.query("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 50) i"));

    const created = await rest(`/v1/projects/${projectId}/database/backups?wait=true`, { method: "POST" });
    expect(created.status).toBe(200);
    expect(created.json.backup).toMatchObject({ kind: "BACKUP_KIND_MANUAL", state: "BACKUP_STATE_SUCCEEDED", projectId });
    const backupId: string = created.json.backup.id;

    await app((c) => c.query("DELETE FROM t WHERE id > 10"));
    const restored = await rest(`/v1/projects/${projectId}/database/backups/${backupId}/restore`, { method: "POST" });
    expect(restored.status).toBe(200);
    expect(restored.json.restored.id).toBe(backupId);
    expect(restored.json.safetyBackup).toMatchObject({ kind: "BACKUP_KIND_SAFETY", state: "BACKUP_STATE_SUCCEEDED" });
    // The DATABASE_URL the deploy engine injected still works and sees the backup's rows.
    expect(await app(async (c) => (await c.query("SELECT count(*)::int AS n FROM t")).rows[0].n)).toBe(50);

    const verified = await rest(`/v1/projects/${projectId}/database/backups/${backupId}/verify`, { method: "POST" });
    expect(verified.json.backup).toMatchObject({ id: backupId, verification: "VERIFICATION_STATE_PASSED" });

    const listed = await rest(`/v1/projects/${projectId}/database/backups`);
    expect(listed.json.backups.map((b: { id: string }) => b.id)).toEqual([restored.json.safetyBackup.id, backupId]);
    expect(listed.json.backups[1]).toMatchObject({ sizeBytes: expect.any(String), sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });

    const download = await fetch(`${base}/v1/projects/${projectId}/database/backups/${backupId}/download`, {
      headers: { authorization: `Bearer ${tokens.project}` },
    });
    const body = Buffer.from(await download.arrayBuffer());
    expect(download.status).toBe(200);
    expect(createHash("sha256").update(body).digest("hex")).toBe(listed.json.backups[1].sha256);

    const metricsText = await (await fetch(`${base}/metrics`)).text();
    expect(metricsText).toContain(`sota_backup_last_success_timestamp_seconds{project_id="${projectId}"}`);
  });

  it("returns the running backup to a second create, and NotFound for another project's backup", async () => {
    // A lock the app holds keeps pg_dump waiting, so the first backup is surely still running.
    const holder = new pg.Client({ connectionString: service.connection(projectId).url });
    await holder.connect();
    await holder.query("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE");
    const first = await rest(`/v1/projects/${projectId}/database/backups`, { method: "POST" });
    const second = await rest(`/v1/projects/${projectId}/database/backups`, { method: "POST" });
    expect(first.json.backup.state).toBe("BACKUP_STATE_RUNNING");
    expect(second.json.backup.id).toBe(first.json.backup.id);
    await holder.query("COMMIT");
    await holder.end();
    const waited = await rest(`/v1/projects/${projectId}/database/backups?wait=true`, { method: "POST" });
    expect(waited.json.backup.state).toBe("BACKUP_STATE_SUCCEEDED");

    expect((await rest(`/v1/projects/${otherProjectId}/database`, { method: "POST", token: tokens.admin })).status).toBe(200);
    for (const action of ["restore", "verify"]) {
      const response = await rest(`/v1/projects/${otherProjectId}/database/backups/${first.json.backup.id}/${action}`, {
        method: "POST",
        token: tokens.admin,
      });
      expect(response.status).toBe(404);
      expect(response.json.code).toBe("not_found");
    }
  });
});
