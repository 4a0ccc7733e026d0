// Point-in-time restore through the service's front door (REST, gRPC,
// Connect), composed by app.ts as `npm start` runs it, on the process
// runtime: real PostgreSQL, PgBouncer, pg_basebackup and pg_receivewal. The
// steps share one database and run in order: each recovery costs real seconds.
import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toJsonString } from "@bufbuild/protobuf";
import { BackupFormat, RestoreBackupResponseSchema } from "../../gen/sota/database/v1/database_pb.js";
import { startHarness, type Harness } from "../support/app-harness.js";
import { grpc, grpcClients, grpcCode, type GrpcClients } from "../support/grpc-client.js";
import { baseBackupAfter, commitThenTime, connectClient, connectionUrl, numbers, recordingRest, windowOf } from "../support/pitr-api.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";
import { queryUrl } from "../support/url-query.js";

let h: Harness;
let rpc: GrpcClients;
let projectId: string;
/** The DATABASE_URL the deploy engine injected before any restore: it must keep working. */
let url: string;
/** Every answer the API gave in this file: none may hold a secret. */
const answers: string[] = [];
/** Passwords of the other databases made here. */
const secrets: string[] = [];

beforeAll(async () => {
  h = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(61), SOTA_BACKUP_MIN_FREE: "0" });
  rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
  projectId = h.projectId;
});

afterAll(async () => {
  rpc?.close();
  await h?.stop();
});

const call = recordingRest(() => h, answers);
const connect = (token = h.tokens.project) => connectClient(h, token);

const base = () => `/v1/projects/${projectId}/database`;

describe("point-in-time restore", () => {
  let firstBase: any;
  /** Between the commits of rows 2 and 3. */
  let betweenTwoAndThree: Date;

  it("reports the recovery window once the first base backup has finished, in GetDatabase and ListBackups, and it grows", async () => {
    expect((await call(base(), { method: "POST", token: h.tokens.project })).status).toBe(200);
    url = await connectionUrl(h, projectId);
    const window = await windowOf(h, projectId);
    expect(window.streaming).toBe(true);
    const listed = (await call(`${base()}/backups`, { token: h.tokens.project })).json;
    firstBase = listed.backups.find((backup: any) => backup.format === "BACKUP_FORMAT_BASE");
    expect(firstBase).toMatchObject({ kind: "BACKUP_KIND_SCHEDULED", state: "BACKUP_STATE_SUCCEEDED", sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(Number(firstBase.sizeBytes)).toBeGreaterThan(0);
    // The window starts where the base backup ended.
    expect(window.earliestTime).toBe(firstBase.finishTime);
    expect(listed.recoveryWindow).toMatchObject({ earliestTime: window.earliestTime, streaming: true });
    expect(new Date(listed.recoveryWindow.latestTime).getTime()).toBeGreaterThanOrEqual(new Date(window.latestTime).getTime());
    const later = (await call(base(), { token: h.tokens.project })).json.recoveryWindow;
    expect(new Date(later.latestTime).getTime()).toBeGreaterThan(new Date(window.latestTime).getTime());
    // gRPC shows the same window.
    const viaGrpc = await rpc.database("getDatabase", { projectId }, h.tokens.project);
    expect(viaGrpc.recoveryWindow).toMatchObject({ streaming: true });
  });

  it("restores (REST, backup id '-') to a second between two commits, behind the same DATABASE_URL, after a safety backup", async () => {
    await queryUrl(url, "CREATE TABLE events (n int PRIMARY KEY)");
    await queryUrl(url, "INSERT INTO events VALUES (1)");
    betweenTwoAndThree = await commitThenTime(url, "INSERT INTO events VALUES (2)");
    await queryUrl(url, "INSERT INTO events VALUES (3)");
    const before = new Date();
    const restored = await call(`${base()}/backups/-/restore`, { method: "POST", token: h.tokens.project, body: { targetTime: betweenTwoAndThree.toISOString() } });
    expect(restored.status, restored.text).toBe(200);
    expect(restored.json.restored).toMatchObject({ id: firstBase.id, format: "BACKUP_FORMAT_BASE" });
    expect(restored.json.safetyBackup).toMatchObject({ kind: "BACKUP_KIND_SAFETY", format: "BACKUP_FORMAT_DUMP", state: "BACKUP_STATE_SUCCEEDED" });
    expect(restored.json.targetTime).toBe(betweenTwoAndThree.toISOString());
    expect(await numbers(url)).toEqual([1, 2]);
    // The new WAL generation gets its base backup, and the database takes writes again.
    await baseBackupAfter(h, projectId, before);
    await queryUrl(url, "INSERT INTO events VALUES (4)");
  });

  it("restores over gRPC from a named base backup, and over Connect back into the generation before the first restore", async () => {
    const listed = (await call(`${base()}/backups`)).json.backups;
    const newestBase = listed.find((backup: any) => backup.format === "BACKUP_FORMAT_BASE" && backup.state === "BACKUP_STATE_SUCCEEDED");
    expect(newestBase.id).not.toBe(firstBase.id);
    const afterFour = await commitThenTime(url, "INSERT INTO events VALUES (5)");
    await queryUrl(url, "INSERT INTO events VALUES (6)");
    const viaGrpc = await rpc.database(
      "restoreBackup",
      { projectId, backupId: newestBase.id, targetTime: { seconds: String(Math.floor(afterFour.getTime() / 1000)), nanos: (afterFour.getTime() % 1000) * 1_000_000 } },
      h.tokens.deployer,
    );
    answers.push(JSON.stringify(viaGrpc));
    expect(viaGrpc.restored.id).toBe(newestBase.id);
    expect(await numbers(url)).toEqual([1, 2, 4, 5]);

    // The first generation still reaches the first target: rows 3 and later are not in it.
    const beforeConnect = new Date();
    const viaConnect = await connect(h.tokens.project).restoreBackup({ projectId, backupId: "-", targetTime: timestampFromDate(betweenTwoAndThree) });
    answers.push(toJsonString(RestoreBackupResponseSchema, viaConnect));
    expect(viaConnect.restored?.id).toBe(firstBase.id);
    expect(viaConnect.restored?.format).toBe(BackupFormat.BASE);
    expect(await numbers(url)).toEqual([1, 2]);
    // Settled: the new generation has its base backup before the next steps look at the list.
    await baseBackupAfter(h, projectId, beforeConnect);
  });

  it("refuses a target outside the window with out_of_range naming both ends, and changes nothing", async () => {
    const window = await windowOf(h, projectId);
    const backupsBefore = (await call(`${base()}/backups`)).json.backups.map((backup: any) => backup.id);
    const rowsBefore = await numbers(url);
    const tooEarly = new Date(new Date(window.earliestTime).getTime() - 3_600_000);
    const tooLate = new Date(Date.now() + 3_600_000);
    for (const target of [tooEarly, tooLate]) {
      const refused = await call(`${base()}/backups/-/restore`, { method: "POST", token: h.tokens.project, body: { targetTime: target.toISOString() } });
      expect(refused.status).toBe(400);
      expect(refused.json.code).toBe("out_of_range");
      expect(refused.json.message).toContain(window.earliestTime.replace("Z", ""));
      expect(refused.json.message).toMatch(/to \d{4}-\d{2}-\d{2}T/);
    }
    const grpcRefusal = await rpc
      .database("restoreBackup", { projectId, backupId: "-", targetTime: { seconds: String(Math.floor(tooEarly.getTime() / 1000)), nanos: 0 } }, h.tokens.deployer)
      .catch((error: grpc.ServiceError) => error);
    expect(grpcRefusal.code).toBe(grpc.status.OUT_OF_RANGE);
    const connectRefusal = await connect()
      .restoreBackup({ projectId, backupId: "-", targetTime: timestampFromDate(tooLate) })
      .then(
        () => undefined,
        (error: unknown) => ConnectError.from(error),
      );
    expect(connectRefusal?.code).toBe(Code.OutOfRange);
    expect(await numbers(url)).toEqual(rowsBefore);
    // No safety backup was taken for a refused restore.
    expect((await call(`${base()}/backups`)).json.backups.map((backup: any) => backup.id)).toEqual(backupsBefore);
  });

  it("refuses a dump's id with target_time, and a base backup's id without it (invalid_argument)", async () => {
    const dump = (await call(`${base()}/backups?wait=true`, { method: "POST", token: h.tokens.project })).json.backup;
    expect(dump.format).toBe("BACKUP_FORMAT_DUMP");
    const withTime = await call(`${base()}/backups/${dump.id}/restore`, { method: "POST", token: h.tokens.project, body: { targetTime: new Date().toISOString() } });
    expect(withTime.status).toBe(400);
    expect(withTime.json).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/is a dump/) });
    const withoutTime = await call(`${base()}/backups/${firstBase.id}/restore`, { method: "POST", token: h.tokens.project });
    expect(withoutTime.status).toBe(400);
    expect(withoutTime.json).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/is a base backup/) });
    const dashWithoutTime = await call(`${base()}/backups/-/restore`, { method: "POST", token: h.tokens.project });
    expect(dashWithoutTime.json.code).toBe("invalid_argument");
  });

  it("restores a dump without target_time exactly as before", async () => {
    await queryUrl(url, "INSERT INTO events VALUES (7)");
    const dump = (await call(`${base()}/backups?wait=true`, { method: "POST", token: h.tokens.project })).json.backup;
    await queryUrl(url, "DELETE FROM events");
    const restored = await call(`${base()}/backups/${dump.id}/restore`, { method: "POST", token: h.tokens.project });
    expect(restored.status, restored.text).toBe(200);
    expect(restored.json.restored).toMatchObject({ id: dump.id, format: "BACKUP_FORMAT_DUMP" });
    expect(restored.json.targetTime).toBeUndefined();
    expect(await numbers(url)).toEqual([1, 2, 7]);
  });

  it("does not serve a base backup for download, and verifies one by checking its file", async () => {
    const download = await fetch(`${h.app.url}${base()}/backups/${firstBase.id}/download`, { headers: { authorization: `Bearer ${h.tokens.project}` } });
    expect(download.status).toBe(400);
    expect(await download.json()).toMatchObject({ code: "failed_precondition", message: expect.stringMatching(/base backup.*not downloadable/) });
    const verified = await call(`${base()}/backups/${firstBase.id}/verify`, { method: "POST", token: h.tokens.project });
    expect(verified.status, verified.text).toBe(200);
    expect(verified.json.backup).toMatchObject({ id: firstBase.id, verification: "VERIFICATION_STATE_PASSED" });
  });

  it("answers NotFound for another project's base backup, and unimplemented nowhere: this runtime has point-in-time recovery", async () => {
    const other = randomUUID();
    expect((await call(`/v1/projects/${other}/database`, { method: "POST" })).status).toBe(200);
    const refused = await call(`/v1/projects/${other}/database/backups/${firstBase.id}/restore`, { method: "POST", body: { targetTime: new Date().toISOString() } });
    expect(refused.status).toBe(404);
    expect(refused.json.code).toBe("not_found");
  });

  it("brings back a database whose data directory is gone (reported failed) to the latest point, every row committed a second before the loss", async () => {
    const lost = randomUUID();
    const slug = "lost-shop";
    expect((await call(`/v1/projects/${lost}/database`, { method: "POST", body: { slug } })).status).toBe(200);
    const lostUrl = await connectionUrl(h, lost);
    secrets.push(new URL(lostUrl).password);
    await windowOf(h, lost);
    await queryUrl(lostUrl, "CREATE TABLE events (n int PRIMARY KEY); INSERT INTO events VALUES (1), (2)");
    await queryUrl(lostUrl, "INSERT INTO events VALUES (3)");
    await sleep(1_000);
    await rm(join(h.dataDir, "instances", slug, "pgdata"), { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
    expect(await grpcCode(rpc.database("ensure", { projectId: lost }, h.tokens.deployer))).toBe(grpc.status.DATA_LOSS);
    const failed = (await call(`/v1/projects/${lost}/database`)).json;
    expect(failed.database.state).toBe("DATABASE_STATE_FAILED");
    // The window is still reported: the archive holds what the database committed.
    expect(failed.recoveryWindow).toBeDefined();
    const restored = await call(`/v1/projects/${lost}/database/backups/-/restore`, { method: "POST", body: { targetTime: failed.recoveryWindow.latestTime } });
    expect(restored.status, restored.text).toBe(200);
    expect(restored.json.safetyBackup).toBeUndefined();
    expect((await call(`/v1/projects/${lost}/database`)).json.database).toMatchObject({ state: "DATABASE_STATE_READY", error: "" });
    expect(await numbers(lostUrl)).toEqual([1, 2, 3]);
    // Ensure is the deploy engine's ordinary call again.
    expect((await rpc.database("ensure", { projectId: lost }, h.tokens.deployer)).database.state).toBe("DATABASE_STATE_READY");
  });

  it("never puts a password, a DATABASE_URL or a token in an answer or a log line", () => {
    const all = [...answers, ...h.logs].join("\n");
    for (const password of [new URL(url).password, ...secrets]) expect(all).not.toContain(password);
    expect(all).not.toContain("postgresql://");
    for (const token of Object.values(h.tokens)) expect(all).not.toContain(token);
  });
});
