// CloneDatabase through the service's front door (REST, gRPC, Connect) on the
// process runtime: a new project's database made from another project's base
// backup and WAL, as of a past second or now, with its own role, password and
// URL; the source only read; a clone that fails leaves nothing.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { gzipSync } from "node:zlib";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toJsonString } from "@bufbuild/protobuf";
import { CloneDatabaseResponseSchema, DatabaseState } from "../../gen/sota/database/v1/database_pb.js";
import { startHarness, type Harness } from "../support/app-harness.js";
import { grpc, grpcClients, type GrpcClients } from "../support/grpc-client.js";
import { baseBackupAfter, commitThenTime, connectClient, connectionUrl, numbers, recordingRest, windowOf } from "../support/pitr-api.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";
import { queryUrl } from "../support/url-query.js";

let h: Harness;
let rpc: GrpcClients;
const source = randomUUID();
let sourceUrl: string;
const answers: string[] = [];
const passwords: string[] = [];

beforeAll(async () => {
  h = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(62), SOTA_BACKUP_MIN_FREE: "0" });
  rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
});

afterAll(async () => {
  rpc?.close();
  await h?.stop();
});

const call = recordingRest(() => h, answers);
const connect = (token: string) => connectClient(h, token);

async function urlOf(projectId: string): Promise<string> {
  const url = await connectionUrl(h, projectId);
  passwords.push(decodeURIComponent(new URL(url).password));
  return url;
}

describe("CloneDatabase", () => {
  let betweenTwoAndThree: Date;

  beforeAll(async () => {
    expect((await call(`/v1/projects/${source}/database`, { method: "POST", body: { slug: "clone-source" } })).status).toBe(200);
    sourceUrl = await urlOf(source);
    await windowOf(h, source);
    await queryUrl(sourceUrl, "CREATE TABLE events (n int PRIMARY KEY)");
    await queryUrl(sourceUrl, "INSERT INTO events VALUES (1)");
    betweenTwoAndThree = await commitThenTime(sourceUrl, "INSERT INTO events VALUES (2)");
    await queryUrl(sourceUrl, "INSERT INTO events VALUES (3)");
  });

  it("makes (REST) a working, separate database as of a past second; the source is unchanged", async () => {
    const target = randomUUID();
    const cloned = await call(`/v1/projects/${target}/database/clone`, {
      method: "POST",
      token: h.tokens.deployer,
      body: { sourceProjectId: source, targetTime: betweenTwoAndThree.toISOString(), slug: "clone-past" },
    });
    expect(cloned.status, cloned.text).toBe(200);
    expect(cloned.json.database).toMatchObject({ projectId: target, slug: "clone-past", state: "DATABASE_STATE_READY", user: "app_clone-past", databaseName: "clone-past" });
    const url = await urlOf(target);
    expect(new URL(url).username).toBe("app_clone-past");
    expect(new URL(url).password).not.toBe(new URL(sourceUrl).password);
    expect(await numbers(url)).toEqual([1, 2]);
    // Separate: a write to the clone is not in the source, and the source goes on as it was.
    await queryUrl(url, "INSERT INTO events VALUES (100)");
    expect(await numbers(sourceUrl)).toEqual([1, 2, 3]);
    await queryUrl(sourceUrl, "INSERT INTO events VALUES (4)");
    expect(await numbers(url)).toEqual([1, 2, 100]);
    // The clone's password does not open the source's database, nor the source's the clone's.
    const sourceAsClone = new URL(sourceUrl);
    sourceAsClone.password = new URL(url).password;
    await expect(queryUrl(sourceAsClone.href, "SELECT 1")).rejects.toThrow();
    // Its own recovery window starts with its own first base backup.
    const window = await windowOf(h, target);
    expect(window.streaming).toBe(true);
    expect(new Date(window.earliestTime).getTime()).toBeGreaterThan(betweenTwoAndThree.getTime());
  });

  it("makes (gRPC) a clone as of now, with the default slug, holding the last commit before the call", async () => {
    const target = randomUUID();
    await queryUrl(sourceUrl, "INSERT INTO events VALUES (5)");
    const cloned = await rpc.database("cloneDatabase", { projectId: target, sourceProjectId: source }, h.tokens.admin);
    answers.push(JSON.stringify(cloned));
    expect(cloned.database).toMatchObject({ projectId: target, slug: `p-${target.replace(/-/g, "")}`, state: "DATABASE_STATE_READY" });
    expect(await numbers(await urlOf(target))).toEqual([1, 2, 3, 4, 5]);
  });

  it("makes (Connect) a clone and answers the database; GetConnection gives its URL", async () => {
    const target = randomUUID();
    const client = connect(h.tokens.deployer);
    const cloned = await client.cloneDatabase({ projectId: target, sourceProjectId: source, targetTime: timestampFromDate(betweenTwoAndThree), slug: "clone-connect" });
    answers.push(toJsonString(CloneDatabaseResponseSchema, cloned));
    expect(cloned.database?.state).toBe(DatabaseState.READY);
    const { databaseUrl } = await client.getConnection({ projectId: target });
    passwords.push(decodeURIComponent(new URL(databaseUrl).password));
    expect(await numbers(databaseUrl)).toEqual([1, 2]);
  });

  it("refuses a project token, on every transport, and creates nothing", async () => {
    const target = h.projectId;
    const refused = await call(`/v1/projects/${target}/database/clone`, { method: "POST", token: h.tokens.project, body: { sourceProjectId: source } });
    expect(refused.status).toBe(403);
    expect(refused.json.code).toBe("permission_denied");
    const viaGrpc = await rpc.database("cloneDatabase", { projectId: target, sourceProjectId: source }, h.tokens.project).catch((error: grpc.ServiceError) => error);
    expect(viaGrpc.code).toBe(grpc.status.PERMISSION_DENIED);
    const viaConnect = await connect(h.tokens.project)
      .cloneDatabase({ projectId: target, sourceProjectId: source })
      .then(
        () => undefined,
        (error: unknown) => ConnectError.from(error),
      );
    expect(viaConnect?.code).toBe(Code.PermissionDenied);
    expect((await call(`/v1/projects/${target}/database`)).status).toBe(404);
  });

  it("refuses a project with a live database, a source without one, itself, and a time outside the source's window", async () => {
    const taken = (await call(`/v1/projects/${source}/database/clone`, { method: "POST", body: { sourceProjectId: h.projectId } })).json;
    expect(taken.code).toBe("already_exists");
    const noSource = (await call(`/v1/projects/${randomUUID()}/database/clone`, { method: "POST", body: { sourceProjectId: randomUUID() } })).json;
    expect(noSource.code).toBe("not_found");
    const itself = (await call(`/v1/projects/${source}/database/clone`, { method: "POST", body: { sourceProjectId: source } })).json;
    expect(itself.code).toBe("invalid_argument");
    const target = randomUUID();
    const window = await windowOf(h, source);
    const early = await call(`/v1/projects/${target}/database/clone`, {
      method: "POST",
      body: { sourceProjectId: source, targetTime: new Date(new Date(window.earliestTime).getTime() - 60_000).toISOString() },
    });
    expect(early.status).toBe(400);
    expect(early.json).toMatchObject({ code: "out_of_range", message: expect.stringContaining(window.earliestTime.replace("Z", "")) });
    expect((await call(`/v1/projects/${target}/database`)).status).toBe(404);
  });

  it("leaves nothing when the recovery fails (a base backup whose file changed): no record, nothing on the host", async () => {
    const listed = (await call(`/v1/projects/${source}/database/backups`)).json.backups;
    const newest = listed.find((backup: any) => backup.format === "BACKUP_FORMAT_BASE" && backup.state === "BACKUP_STATE_SUCCEEDED");
    const file = join(h.dataDir, "backups", "clone-source", `${newest.id}.base.tar.gz`);
    const original = await readFile(file);
    const changed = Buffer.from(original);
    changed[changed.length >> 1] = changed[changed.length >> 1]! ^ 0xff;
    await writeFile(file, changed);
    const target = randomUUID();
    try {
      const failed = await call(`/v1/projects/${target}/database/clone`, { method: "POST", body: { sourceProjectId: source, slug: "clone-failed" } });
      expect(failed.status).toBe(500);
      expect(failed.json).toMatchObject({ code: "data_loss", message: expect.stringMatching(/checksum mismatch.*nothing was created/) });
    } finally {
      await writeFile(file, original);
    }
    expect((await call(`/v1/projects/${target}/database`)).status).toBe(404);
    expect(await h.app.store.getDatabaseBySlug("clone-failed")).toBeUndefined();
    expect((await h.app.runtime.status({ projectId: target, slug: "clone-failed" })).state).toBe("missing");
    // The slug is free again and the project can be cloned into after all.
    const retried = await call(`/v1/projects/${target}/database/clone`, { method: "POST", body: { sourceProjectId: source, slug: "clone-failed" } });
    expect(retried.status, retried.text).toBe(200);
  });

  it("leaves nothing when the runtime's recovery fails half way (a base backup that is not a server, checksums matching)", async () => {
    const listed = (await call(`/v1/projects/${source}/database/backups`)).json.backups;
    const newest = listed.find((backup: any) => backup.format === "BACKUP_FORMAT_BASE" && backup.state === "BACKUP_STATE_SUCCEEDED");
    const file = join(h.dataDir, "backups", "clone-source", `${newest.id}.base.tar.gz`);
    const original = { bytes: await readFile(file), record: (await h.app.store.getBackup(source, newest.id))! };
    // Valid gzip of something that is no tar: only the runtime's recovery can find out.
    const garbage = gzipSync(randomBytes(2 * 1024 * 1024));
    await writeFile(file, garbage);
    await h.app.store.updateBackup(newest.id, { sizeBytes: garbage.length, sha256: createHash("sha256").update(garbage).digest("hex") });
    const target = randomUUID();
    try {
      const failed = await call(`/v1/projects/${target}/database/clone`, { method: "POST", body: { sourceProjectId: source, slug: "clone-broken" } });
      expect(failed.status).toBeGreaterThanOrEqual(400);
      expect(failed.json.message).toMatch(/clone failed.*nothing was created/);
    } finally {
      await writeFile(file, original.bytes);
      await h.app.store.updateBackup(newest.id, { sizeBytes: original.record.sizeBytes, sha256: original.record.sha256 });
    }
    expect((await call(`/v1/projects/${target}/database`)).status).toBe(404);
    expect((await h.app.runtime.status({ projectId: target, slug: "clone-broken" })).state).toBe("missing");
    expect(await h.app.runtime.pitr!.walGenerations({ projectId: target, slug: "clone-broken" })).toEqual([]);
    expect(h.logs.join("")).not.toContain("could not remove what a failed clone left");
    // The source was only read.
    expect(await numbers(sourceUrl)).toEqual([1, 2, 3, 4, 5]);
  });

  it("clones into a project whose database was deleted, keeping its slug, and takes the clone's first base backup", async () => {
    const target = randomUUID();
    expect((await call(`/v1/projects/${target}/database`, { method: "POST", body: { slug: "clone-reborn" } })).status).toBe(200);
    expect((await call(`/v1/projects/${target}/database?skip_final_backup=true`, { method: "DELETE" })).status).toBe(200);
    const before = new Date();
    const cloned = await call(`/v1/projects/${target}/database/clone`, { method: "POST", body: { sourceProjectId: source } });
    expect(cloned.status, cloned.text).toBe(200);
    expect(cloned.json.database).toMatchObject({ slug: "clone-reborn", state: "DATABASE_STATE_READY" });
    expect(await numbers(await urlOf(target))).toEqual([1, 2, 3, 4, 5]);
    await baseBackupAfter(h, target, before);
  });

  it("never puts a password, a DATABASE_URL or a token in an answer or a log line", () => {
    expect(passwords.length).toBeGreaterThanOrEqual(4);
    const all = [...answers, ...h.logs].join("\n");
    for (const secret of [...passwords, ...Object.values(h.tokens)]) expect(all).not.toContain(secret);
    expect(all).not.toContain("postgresql://");
  });
});
