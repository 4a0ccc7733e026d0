// How a tenant could abuse DeleteDatabase and RotateCredentials (issue 11),
// through the real API against real PostgreSQL and PgBouncer.
//
// The attacks: a project token (an app's own, or a leaked one) deletes its
// database with the final backup skipped, or rotates the password to lock
// the app out, or does either to another project. And once a database is
// deleted, another project asks for its slug: had the delete forgotten the
// record, that project would own the slug, its backup directory and the
// deleted project's final backup's path. Each must be refused, with nothing
// changed.
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";
import { connectClient as sharedConnectClient, connectCode } from "../support/connect-client.js";
import { grpc, grpcClients, grpcCode, type GrpcClients } from "../support/grpc-client.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";

let h: Harness;
let rpc: GrpcClients;

beforeAll(async () => {
  h = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(72), SOTA_BACKUP_MIN_FREE: "0" });
  rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
}, 120_000);

afterAll(async () => {
  rpc?.close();
  await h?.stop();
});

const connectClient = (token: string) => sharedConnectClient(h, token);

async function selectOne(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query("SELECT 1");
  await client.end();
}

describe("a project token", () => {
  it("cannot delete or rotate its own database or another's, through gRPC, Connect or REST; nothing changes", async () => {
    await rpc.database("ensure", { projectId: h.projectId }, h.tokens.project);
    await rpc.database("ensure", { projectId: h.otherProjectId }, h.tokens.other);
    const urls = await Promise.all(
      [h.projectId, h.otherProjectId].map(async (projectId) => (await rpc.database("getConnection", { projectId }, h.tokens.admin)).databaseUrl as string),
    );
    const connect = connectClient(h.tokens.project);
    for (const projectId of [h.projectId, h.otherProjectId]) {
      expect(await grpcCode(rpc.database("deleteDatabase", { projectId, skipFinalBackup: true }, h.tokens.project))).toBe(grpc.status.PERMISSION_DENIED);
      expect(await grpcCode(rpc.database("rotateCredentials", { projectId }, h.tokens.project))).toBe(grpc.status.PERMISSION_DENIED);
      expect(await connectCode(connect.deleteDatabase({ projectId, skipFinalBackup: true }))).toBe(Code.PermissionDenied);
      expect(await connectCode(connect.rotateCredentials({ projectId }))).toBe(Code.PermissionDenied);
      const headers = { authorization: `Bearer ${h.tokens.project}` };
      expect((await fetch(`${h.app.url}/v1/projects/${projectId}/database?skip_final_backup=true`, { method: "DELETE", headers })).status).toBe(403);
      expect((await fetch(`${h.app.url}/v1/projects/${projectId}/database/credentials/rotate`, { method: "POST", headers })).status).toBe(403);
    }
    // Both databases are as they were: ready, same URL, and it works.
    for (const [index, projectId] of [h.projectId, h.otherProjectId].entries()) {
      expect((await rpc.database("getDatabase", { projectId }, h.tokens.admin)).database.state).toBe("DATABASE_STATE_READY");
      expect((await rpc.database("getConnection", { projectId }, h.tokens.admin)).databaseUrl).toBe(urls[index]);
      await selectOne(urls[index]!);
    }
  });
});

describe("a deleted database's slug", () => {
  it("stays its project's while its backups are kept: another project cannot take it, nor reach the backups", async () => {
    const victim = randomUUID();
    const slug = "departed-shop";
    await rpc.database("ensure", { projectId: victim, slug }, h.tokens.deployer);
    const deleted = await rpc.database("deleteDatabase", { projectId: victim }, h.tokens.deployer);
    expect(deleted.database.state).toBe("DATABASE_STATE_DELETED");
    const finalId: string = deleted.finalBackup.id;

    // Another project (its own token, and even the deployer on its behalf) asks for the slug.
    const refused = await rpc.database("ensure", { projectId: h.otherProjectId, slug }, h.tokens.other).catch((error: grpc.ServiceError) => error);
    expect((refused as grpc.ServiceError).code).toBe(grpc.status.FAILED_PRECONDITION); // it already has a database of its own
    const stranger = randomUUID();
    expect(await grpcCode(rpc.database("ensure", { projectId: stranger, slug }, h.tokens.deployer))).toBe(grpc.status.ALREADY_EXISTS);
    expect(await grpcCode(rpc.database("getDatabase", { projectId: stranger }, h.tokens.deployer))).toBe(grpc.status.NOT_FOUND);

    // The backups stay the deleted project's, and only its.
    expect(await grpcCode(rpc.database("listBackups", { projectId: victim }, h.tokens.other))).toBe(grpc.status.PERMISSION_DENIED);
    const download = await fetch(`${h.app.url}/v1/projects/${victim}/database/backups/${finalId}/download`, {
      headers: { authorization: `Bearer ${h.tokens.other}` },
    });
    expect(download.status).toBe(403);
    const listed = await rpc.database("listBackups", { projectId: victim }, h.tokens.deployer);
    // Its dumps (its base backups, for point-in-time restore, are listed beside them).
    expect(listed.backups.filter((backup: { format: string }) => backup.format === "BACKUP_FORMAT_DUMP").map((backup: { id: string }) => backup.id)).toEqual([finalId]);
    const own = await fetch(`${h.app.url}/v1/projects/${victim}/database/backups/${finalId}/download`, {
      headers: { authorization: `Bearer ${h.tokens.deployer}` },
    });
    expect(own.status).toBe(200);
    await own.arrayBuffer();
  });
});
