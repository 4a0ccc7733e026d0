// Backups through the service's real front door, composed by app.ts exactly
// as `npm start` runs it: the REST paths, gRPC and the download route, over a
// real PostgreSQL + PgBouncer.
import { createHash, randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";
import { grpcClients, type GrpcClients } from "../support/grpc-client.js";

let h: Harness;
let base: string;
let projectId: string;
let otherProjectId: string;
let tokens: { admin: string; project: string };

beforeAll(async () => {
  h = await startHarness();
  base = h.app.url;
  projectId = h.projectId;
  otherProjectId = randomUUID();
  tokens = { admin: h.tokens.admin, project: h.tokens.project };
});

afterAll(async () => {
  await h?.stop();
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
  const client = new pg.Client({ connectionString: (await h.app.service.connection(projectId)).url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

describe("backups over REST", () => {
  it("create, list, restore, verify and download, as the product spec's curl lines do", async () => {
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
    // The dumps; the database's base backups (point-in-time restore) are listed beside them.
    const dumps = listed.json.backups.filter((b: { format: string }) => b.format === "BACKUP_FORMAT_DUMP");
    expect(dumps.map((b: { id: string }) => b.id)).toEqual([restored.json.safetyBackup.id, backupId]);
    expect(dumps[1]).toMatchObject({ sizeBytes: expect.any(String), sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });

    const download = await fetch(`${base}/v1/projects/${projectId}/database/backups/${backupId}/download`, {
      headers: { authorization: `Bearer ${tokens.project}` },
    });
    const body = Buffer.from(await download.arrayBuffer());
    expect(download.status).toBe(200);
    expect(createHash("sha256").update(body).digest("hex")).toBe(dumps[1].sha256);

    const metricsText = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${tokens.admin}` } })).text();
    expect(metricsText).toContain(`sota_backup_last_success_timestamp_seconds{project_id="${projectId}"}`);
  });

  it("returns the running backup to a second create, and NotFound for another project's backup", async () => {
    // A lock the app holds keeps pg_dump waiting, so the first backup is surely still running.
    const holder = new pg.Client({ connectionString: (await h.app.service.connection(projectId)).url });
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

describe("backups over gRPC", () => {
  let rpc: GrpcClients;
  beforeAll(() => {
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
  });
  afterAll(() => rpc?.close());

  it("CreateBackup with wait and ListBackups, newest first, with no secret in them", async () => {
    const id = randomUUID();
    await rpc.database("ensure", { projectId: id, slug: "backed-up" }, h.tokens.deployer);
    const { backup } = await rpc.database("createBackup", { projectId: id, wait: true }, h.tokens.deployer);
    expect(backup).toMatchObject({ projectId: id, kind: "BACKUP_KIND_MANUAL", state: "BACKUP_STATE_SUCCEEDED" });
    expect(Number(backup.sizeBytes)).toBeGreaterThan(0);
    const second = (await rpc.database("createBackup", { projectId: id, wait: true }, h.tokens.deployer)).backup;
    const { backups } = await rpc.database("listBackups", { projectId: id }, h.tokens.deployer);
    const dumps = backups.filter((b: { format: string }) => b.format === "BACKUP_FORMAT_DUMP");
    expect(dumps.map((b: { id: string }) => b.id)).toEqual([second.id, backup.id]);
    const url = (await rpc.database("getConnection", { projectId: id }, h.tokens.deployer)).databaseUrl;
    expect(JSON.stringify(backups)).not.toContain(new URL(url).password);
    expect(h.logs.join("")).not.toContain(new URL(url).password);
  });
});
