// GET /v1/projects/{id}/database/backups/{backup_id}/download over real HTTP:
// auth rules, headers, and the file restoring with `gunzip -c | psql` into an
// empty database.
import { spawn } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newBackupId } from "../../src/service/names.js";
import { backupDownloadRoute } from "../../src/server/backup-download-route.js";
import { hashToken, TokenRegistry } from "../../src/server/tokens.js";
import type { BackupRecord } from "../../src/store/records.js";
import { startBackupServer, type BackupServer } from "../support/backup-postgres.js";

let server: BackupServer;
let api: http.Server;
let base: string;
let backup: BackupRecord;
let atBackup: Record<string, unknown>[];
const otherProjectId = randomUUID();
const tokens = {
  admin: `adm_${randomBytes(16).toString("hex")}`,
  project: `prj_${randomBytes(16).toString("hex")}`,
  other: `oth_${randomBytes(16).toString("hex")}`,
};
const ROWS = "SELECT id, name, note FROM notes ORDER BY id";

beforeAll(async () => {
  server = await startBackupServer(8, "notes");
  const registry = new TokenRegistry([
    { name: "ops", role: "admin", sha256: hashToken(tokens.admin) },
    { name: "customer", role: "project", projectId: server.target.projectId, sha256: hashToken(tokens.project) },
    { name: "other", role: "project", projectId: otherProjectId, sha256: hashToken(tokens.other) },
  ]);
  const route = backupDownloadRoute({
    tokens: registry,
    service: { downloadBackup: (projectId, backupId) => server.manager.download(projectId, backupId) },
    logger: server.bed.logs.logger,
    metrics: server.metrics,
  });
  api = http.createServer((req, res) => {
    void route(req, res, new URL(req.url ?? "/", "http://localhost")).then((handled) => {
      if (!handled) res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => api.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;

  await server.appQuery(`CREATE TABLE notes (id serial PRIMARY KEY, name text NOT NULL, note text)`);
  await server.appQuery(`INSERT INTO notes (name, note) SELECT 'n' || i, repeat('x', i % 50) FROM generate_series(1, 300) AS i`);
  atBackup = await server.appQuery(ROWS);
  backup = await server.manager.create(server.target, "manual", { wait: true });
  await server.appQuery(`DELETE FROM notes WHERE id > 100`);
});
afterAll(async () => {
  await new Promise((resolve) => api?.close(resolve));
  await server?.close();
});

function url(projectId: string, backupId: string): string {
  return `${base}/v1/projects/${projectId}/database/backups/${backupId}/download`;
}

async function get(target: string, token?: string, method = "GET"): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const response = await fetch(target, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: response.status, headers: response.headers, body: Buffer.from(await response.arrayBuffer()) };
}

describe("backup download", () => {
  it("streams the .sql.gz with its length and sha256, and gunzip | psql restores it into an empty database", async () => {
    const response = await get(url(server.target.projectId, backup.id), tokens.project);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/gzip");
    expect(Number(response.headers.get("content-length"))).toBe(backup.sizeBytes);
    expect(response.body.length).toBe(backup.sizeBytes);
    const sha256 = createHash("sha256").update(response.body).digest();
    expect(response.headers.get("x-checksum-sha256")).toBe(sha256.toString("hex"));
    expect(response.headers.get("x-checksum-sha256")).toBe(backup.sha256);
    expect(response.headers.get("digest")).toBe(`sha-256=${sha256.toString("base64")}`);
    expect(response.headers.get("content-disposition")).toBe(`attachment; filename="notes-${backup.id}.sql.gz"`);

    await server.runtime.adminQuery(server.target, `CREATE DATABASE "download-check"`);
    await gunzipIntoPsql(response.body, server.socketDir, "download-check");
    const rows = await server.runtime.adminQuery(server.target, `SELECT id::int AS id, name, note FROM notes ORDER BY id`, "download-check");
    expect(rows.map((row) => ({ ...row, id: Number(row["id"]) }))).toEqual(atBackup);
    await server.runtime.adminQuery(server.target, `DROP DATABASE "download-check"`);
  });

  it("answers HEAD with the headers only", async () => {
    const response = await get(url(server.target.projectId, backup.id), tokens.admin, "HEAD");
    expect(response.status).toBe(200);
    expect(response.headers.get("x-checksum-sha256")).toBe(backup.sha256);
    expect(response.body.length).toBe(0);
  });

  it("requires a token, and a project token only for its own project", async () => {
    const missing = await get(url(server.target.projectId, backup.id));
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toBe("Bearer");
    expect(JSON.parse(missing.body.toString())).toMatchObject({ code: "unauthenticated" });
    expect((await get(url(server.target.projectId, backup.id), "not-a-token")).status).toBe(401);
    const foreign = await get(url(server.target.projectId, backup.id), tokens.other);
    expect(foreign.status).toBe(403);
    expect(JSON.parse(foreign.body.toString())).toMatchObject({ code: "permission_denied" });
  });

  it("answers 404 for unknown ids and for another project's backup id, whoever asks", async () => {
    const otherBackup = { ...backup, id: newBackupId(new Date()), projectId: otherProjectId };
    server.store.insertBackup(otherBackup);
    for (const [projectId, backupId] of [
      [server.target.projectId, newBackupId(new Date())],
      [server.target.projectId, otherBackup.id],
      [otherProjectId, backup.id],
    ] as const) {
      const response = await get(url(projectId, backupId), tokens.admin);
      expect(response.status).toBe(404);
      expect(response.headers.get("content-type")).toBe("application/json");
      expect(JSON.parse(response.body.toString())).toMatchObject({ code: "not_found" });
    }
  });

  it("rejects ids that are not backup ids, path characters included, before touching a file", async () => {
    for (const id of ["..%2F..%2F..%2Fetc%2Fpasswd", "x.sql.gz", `${backup.id}%00`, `${backup.id}.sql.gz`]) {
      const response = await get(url(server.target.projectId, id), tokens.admin);
      expect(response.status).toBe(400);
      expect(JSON.parse(response.body.toString())).toMatchObject({ code: "invalid_argument" });
    }
    // "%2E%2E" is "..": the URL parser folds the segment away, so no route matches at all.
    expect((await get(url(server.target.projectId, "%2E%2E"), tokens.admin)).status).toBe(404);
  });

  it("answers 405 to other methods", async () => {
    expect((await get(url(server.target.projectId, backup.id), tokens.admin, "DELETE")).status).toBe(405);
  });
});

/** `gunzip -c | psql` exactly as a user would run it, with the downloaded bytes on stdin. */
async function gunzipIntoPsql(gz: Buffer, socketDir: string, database: string): Promise<void> {
  const child = spawn(
    "sh",
    ["-c", 'gunzip -c | psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -U postgres -d "$DATABASE" >/dev/null'],
    { env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", SOCKET_DIR: socketDir, DATABASE: database }, stdio: ["pipe", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(gz);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  if (code !== 0) throw new Error(`gunzip | psql failed (${code}): ${stderr}`);
}
