// How a tenant could abuse point-in-time restore and CloneDatabase (issue
// 12), through the real API against real PostgreSQL, PgBouncer, pg_basebackup
// and pg_receivewal.
//
// The attacks, with a project token (an app's own, or a leaked one):
// - CloneDatabase into its own project from another project's data: the
//   token's project check covers project_id, not source_project_id, so a
//   project token must not reach CloneDatabase at all;
// - RestoreBackup of its own database naming another project's base backup
//   id (its data would replace the tenant's, and the tenant would read it);
// - RestoreBackup of another project's database;
// - hostile target times: strings that are not times, times outside
//   Timestamp's range, seconds and nanos no encoder would make (gRPC lets a
//   client send any int64 and int32), a backup id that is a path.
// Each must be refused with the right code, and nothing changed: no safety
// backup taken, no database made, the data as it was.
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";
import { grpc, grpcClients, grpcCode, type GrpcClients } from "../support/grpc-client.js";
import { connectClient, connectCode, connectionUrl, numbers, rest, windowOf } from "../support/pitr-api.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";
import { queryUrl } from "../support/url-query.js";

let h: Harness;
let rpc: GrpcClients;
/** The tenant's project (h.projectId, h.tokens.project) and the victim's (h.otherProjectId). */
let tenantUrl: string;
let victimUrl: string;
let victimBaseId: string;

beforeAll(async () => {
  h = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(63), SOTA_BACKUP_MIN_FREE: "0" });
  rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
  for (const projectId of [h.projectId, h.otherProjectId]) {
    expect((await rest(h, `/v1/projects/${projectId}/database`, { method: "POST" })).status).toBe(200);
  }
  tenantUrl = await connectionUrl(h, h.projectId);
  victimUrl = await connectionUrl(h, h.otherProjectId);
  await queryUrl(tenantUrl, "CREATE TABLE events (n int PRIMARY KEY); INSERT INTO events VALUES (1)");
  await queryUrl(victimUrl, "CREATE TABLE events (n int PRIMARY KEY); INSERT INTO events VALUES (666)");
  await windowOf(h, h.projectId);
  await windowOf(h, h.otherProjectId);
  const listed = (await rest(h, `/v1/projects/${h.otherProjectId}/database/backups`)).json.backups;
  victimBaseId = listed.find((backup: any) => backup.format === "BACKUP_FORMAT_BASE").id;
}, 240_000);

afterAll(async () => {
  rpc?.close();
  await h?.stop();
});


async function backupIds(projectId: string): Promise<string[]> {
  return (await rest(h, `/v1/projects/${projectId}/database/backups`)).json.backups.map((backup: any) => backup.id);
}

/** Runs the attacks and checks that neither project changed: same rows, no new backup (a refused restore takes no safety backup). */
async function nothingChanges(attacks: () => Promise<void>): Promise<void> {
  const before = { tenant: await backupIds(h.projectId), victim: await backupIds(h.otherProjectId) };
  await attacks();
  expect(await numbers(tenantUrl)).toEqual([1]);
  expect(await numbers(victimUrl)).toEqual([666]);
  expect(await backupIds(h.projectId)).toEqual(before.tenant);
  expect(await backupIds(h.otherProjectId)).toEqual(before.victim);
}

describe("a project token against point-in-time restore and clone", () => {
  it("cannot clone another project's data, into its own project or any other, on any transport", async () => {
    await nothingChanges(async () => {
      const target = randomUUID();
      for (const projectId of [h.projectId, target]) {
        const refused = await rest(h, `/v1/projects/${projectId}/database/clone`, {
          method: "POST",
          token: h.tokens.project,
          body: { sourceProjectId: h.otherProjectId },
        });
        expect(refused.status).toBe(403);
        expect(refused.json.code).toBe("permission_denied");
        expect(await grpcCode(rpc.database("cloneDatabase", { projectId, sourceProjectId: h.otherProjectId }, h.tokens.project))).toBe(
          grpc.status.PERMISSION_DENIED,
        );
        expect(await connectCode(connectClient(h, h.tokens.project).cloneDatabase({ projectId, sourceProjectId: h.otherProjectId }))).toBe(Code.PermissionDenied);
      }
      // Nothing was made for the target.
      expect((await rest(h, `/v1/projects/${target}/database`)).status).toBe(404);
    });
  });

  it("cannot restore its database from another project's base backup, nor restore another project's database", async () => {
    await nothingChanges(async () => {
      const now = new Date().toISOString();
      const foreign = await rest(h, `/v1/projects/${h.projectId}/database/backups/${victimBaseId}/restore`, {
        method: "POST",
        token: h.tokens.project,
        body: { targetTime: now },
      });
      expect(foreign.status).toBe(404);
      expect(foreign.json.code).toBe("not_found");
      expect(
        await grpcCode(rpc.database("restoreBackup", { projectId: h.projectId, backupId: victimBaseId, targetTime: { seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 } }, h.tokens.project)),
      ).toBe(grpc.status.NOT_FOUND);
      const otherProject = await rest(h, `/v1/projects/${h.otherProjectId}/database/backups/-/restore`, {
        method: "POST",
        token: h.tokens.project,
        body: { targetTime: now },
      });
      expect(otherProject.status).toBe(403);
    });
  });

  it("refuses hostile target times and backup ids cleanly (invalid_argument), before anything is taken", async () => {
    await nothingChanges(async () => {
      const path = `/v1/projects/${h.projectId}/database/backups/-/restore`;
      for (const targetTime of [
        "yesterday",
        "2026-13-45T25:61:00Z",
        "'; DROP TABLE events; --",
        "0000-01-01T00:00:00Z",
        "10000-01-01T00:00:00Z",
        "2026-11-30T12:00:00",
        12345678901234567890,
        { seconds: "1", nanos: 0 },
        "x".repeat(10_000),
      ]) {
        const refused = await rest(h, path, { method: "POST", token: h.tokens.project, body: { targetTime } });
        expect(refused.status, `${JSON.stringify(targetTime).slice(0, 40)}: ${refused.text}`).toBe(400);
        expect(refused.json.code).toBe("invalid_argument");
      }
      for (const targetTime of [
        { seconds: "99999999999999", nanos: 0 },
        { seconds: "-99999999999999", nanos: 0 },
        { seconds: "1764500000", nanos: -1 },
        { seconds: "1764500000", nanos: 2_000_000_000 },
      ]) {
        expect(await grpcCode(rpc.database("restoreBackup", { projectId: h.projectId, backupId: "-", targetTime }, h.tokens.project)), JSON.stringify(targetTime)).toBe(
          grpc.status.INVALID_ARGUMENT,
        );
        expect(
          await grpcCode(rpc.database("cloneDatabase", { projectId: randomUUID(), sourceProjectId: h.projectId, targetTime }, h.tokens.admin)),
          JSON.stringify(targetTime),
        ).toBe(grpc.status.INVALID_ARGUMENT);
      }
      for (const backupId of ["../../etc/passwd", "20261130t120000000z-0123456789ab/../x", "%2e%2e", "-;rm -rf /"]) {
        const refused = await rest(h, `/v1/projects/${h.projectId}/database/backups/${encodeURIComponent(backupId)}/restore`, {
          method: "POST",
          token: h.tokens.project,
          body: { targetTime: new Date().toISOString() },
        });
        expect(refused.json?.code, backupId).toBe("invalid_argument");
      }
      // A time far in the past is a time, and out of the window: out_of_range, not a crash.
      const ancient = await rest(h, path, { method: "POST", token: h.tokens.project, body: { targetTime: "0001-01-01T00:00:00Z" } });
      expect(ancient.json.code).toBe("out_of_range");
    });
  });
});
