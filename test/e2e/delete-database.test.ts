// DeleteDatabase end to end, through a real gRPC client and the REST paths,
// against real PostgreSQL + PgBouncer: a final backup first (and nothing
// removed when it cannot be taken), then nothing of the database left on the
// host but its backups, which stay listed, downloadable and restorable into
// the new database a later Ensure makes. A delete cut short by kill -9 is
// finished by the next start.
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";
import { removeDataDir } from "../support/data-dir-cleanup.js";
import { dockerServiceEnv, DockerTestBed, dockerTestsRun, removeProjectObjects } from "../support/docker-test-bed.js";
import { grpc, grpcClients, grpcCode, type GrpcClients } from "../support/grpc-client.js";
import { dockerLeftovers, processFootprint, processLeftovers } from "../support/host-leftovers.js";
import { REPO_ROOT, serviceCommand } from "../support/service-command.js";
import { queryUrl } from "../support/url-query.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";

const DAY_MS = 24 * 60 * 60 * 1000;

/** The dumps of a listing: base backups (point-in-time restore) are taken beside them from the first Ensure on. */
const dumps = (backups: any[]): any[] => backups.filter((backup) => backup.format === "BACKUP_FORMAT_DUMP");


describe("DeleteDatabase on the process runtime", () => {
  let h: Harness;
  let rpc: GrpcClients;
  const secrets: string[] = [];
  const projectId = randomUUID();
  const slug = "doomed-shop";

  function rest(path: string, method: string, token: string) {
    return fetch(`${h.app.url}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
  }

  async function ensureWithData(id: string, slugOf: string): Promise<string> {
    await rpc.database("ensure", { projectId: id, slug: slugOf }, h.tokens.deployer);
    const { databaseUrl } = await rpc.database("getConnection", { projectId: id }, h.tokens.deployer);
    secrets.push(databaseUrl, new URL(databaseUrl).password);
    await queryUrl(databaseUrl, "CREATE TABLE orders (id int); INSERT INTO orders VALUES (42)");
    return databaseUrl;
  }

  /** The same data dir on a new API port: the gRPC client follows. */
  async function restart(): Promise<void> {
    await h.restart();
    rpc.close();
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
  }

  beforeAll(async () => {
    h = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(44) });
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
    secrets.push(...Object.values(h.tokens));
  });

  afterAll(async () => {
    rpc?.close();
    await h?.stop();
  });

  it("refuses a project token, even its own project's, with PERMISSION_DENIED on gRPC and 403 on REST", async () => {
    const ensured = await rpc.database("ensure", { projectId: h.projectId }, h.tokens.deployer);
    expect(await grpcCode(rpc.database("deleteDatabase", { projectId: h.projectId, skipFinalBackup: true }, h.tokens.project))).toBe(
      grpc.status.PERMISSION_DENIED,
    );
    const response = await rest(`/v1/projects/${h.projectId}/database?skip_final_backup=true`, "DELETE", h.tokens.project);
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ code: "permission_denied" });
    expect((await rpc.database("getDatabase", { projectId: h.projectId }, h.tokens.deployer)).database.state).toBe("DATABASE_STATE_READY");
    expect(ensured.database.state).toBe("DATABASE_STATE_READY");
  });

  it("deletes nothing when the final backup cannot be taken (the free-space reserve refuses it)", async () => {
    const url = await ensureWithData(projectId, slug);
    h.env["SOTA_BACKUP_MIN_FREE"] = "99%";
    await restart();
    try {
      const response = await rest(`/v1/projects/${projectId}/database`, "DELETE", h.tokens.deployer);
      expect(response.status).toBe(429);
      expect(await response.json()).toMatchObject({ code: "resource_exhausted" });
      const database = (await rpc.database("getDatabase", { projectId }, h.tokens.deployer)).database;
      expect(database.state).toBe("DATABASE_STATE_READY");
      expect((await queryUrl(url, "SELECT id FROM orders")).rows).toEqual([{ id: 42 }]);
      expect(dumps((await rpc.database("listBackups", { projectId }, h.tokens.deployer)).backups)).toEqual([]);
    } finally {
      h.env["SOTA_BACKUP_MIN_FREE"] = "0";
      await restart();
    }
  });

  it("deletes nothing when the final backup fails (its directory cannot be made), and says why", async () => {
    const url = (await rpc.database("getConnection", { projectId }, h.tokens.deployer)).databaseUrl;
    // A file where the project's backup directory would go (its base backups moved aside): the dump has nowhere to be written.
    const blocker = join(h.dataDir, "backups", slug);
    const aside = existsSync(blocker);
    if (aside) renameSync(blocker, `${blocker}.aside`);
    writeFileSync(blocker, "not a directory");
    try {
      const response = await rest(`/v1/projects/${projectId}/database`, "DELETE", h.tokens.deployer);
      expect(response.status).toBe(400);
      const body = (await response.json()) as { code: string; message: string };
      expect(body.code).toBe("failed_precondition");
      expect(body.message).toMatch(/final backup .* failed .*nothing was deleted.*skip_final_backup/);
      expect((await rpc.database("getDatabase", { projectId }, h.tokens.deployer)).database.state).toBe("DATABASE_STATE_READY");
      expect((await queryUrl(url, "SELECT id FROM orders")).rows).toEqual([{ id: 42 }]);
      const [failed] = dumps((await rpc.database("listBackups", { projectId }, h.tokens.deployer)).backups);
      expect(failed).toMatchObject({ kind: "BACKUP_KIND_FINAL", state: "BACKUP_STATE_FAILED" });
    } finally {
      rmSync(blocker);
      if (aside) renameSync(`${blocker}.aside`, blocker);
    }
  });

  it("takes a final backup, removes everything of the database from the host, and keeps the backup downloadable", async () => {
    const before = (await rpc.database("getDatabase", { projectId }, h.tokens.deployer)).database;
    const footprint = await processFootprint(h.dataDir, projectId, slug, before.port);
    const { databaseUrl: url } = await rpc.database("getConnection", { projectId }, h.tokens.deployer);
    expect(await processLeftovers(footprint)).not.toEqual([]);

    const response = await rest(`/v1/projects/${projectId}/database`, "DELETE", h.tokens.deployer);
    expect(response.status).toBe(200);
    const body = (await response.json()) as any;
    expect(body.database).toMatchObject({ projectId, slug, state: "DATABASE_STATE_DELETED" });
    expect(body.database.host ?? "").toBe("");
    expect(body.finalBackup).toMatchObject({ kind: "BACKUP_KIND_FINAL", state: "BACKUP_STATE_SUCCEEDED" });
    expect(JSON.stringify(body)).not.toMatch(/postgresql:\/\//);

    expect(await processLeftovers(footprint)).toEqual([]);
    await expect(queryUrl(url, "SELECT 1")).rejects.toThrow();
    // No "backup too old" alert for a database that is gone.
    const metrics = await (await rest("/metrics", "GET", h.tokens.admin)).text();
    expect(metrics).not.toMatch(new RegExp(`sota_backup_last_success_timestamp_seconds\\{[^}]*${projectId}`));

    const listed = (await (await rest(`/v1/projects/${projectId}/database/backups`, "GET", h.tokens.deployer)).json()) as any;
    // The final backup, and the failed attempt before it: a deleted database keeps every record for the period.
    expect(listed.backups.map((backup: any) => backup.id)).toContain(body.finalBackup.id);
    expect(dumps(listed.backups).filter((backup: any) => backup.state === "BACKUP_STATE_SUCCEEDED").map((backup: any) => backup.id)).toEqual([body.finalBackup.id]);
    const expires = Date.parse(listed.backups.find((backup: any) => backup.id === body.finalBackup.id).expireTime);
    expect(Math.abs(expires - (Date.parse(body.database.updateTime) + 30 * DAY_MS))).toBeLessThan(1000);
    const download = await rest(`/v1/projects/${projectId}/database/backups/${body.finalBackup.id}/download`, "GET", h.tokens.deployer);
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer()).length).toBe(Number(body.finalBackup.sizeBytes));

    // What needs a running database says so; nothing hands out the old URL.
    expect(await grpcCode(rpc.database("getConnection", { projectId }, h.tokens.deployer))).toBe(grpc.status.FAILED_PRECONDITION);
    expect(await grpcCode(rpc.database("createBackup", { projectId, wait: true }, h.tokens.deployer))).toBe(grpc.status.FAILED_PRECONDITION);
    expect(await grpcCode(rpc.database("rotateCredentials", { projectId }, h.tokens.deployer))).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it("is idempotent: deleting a deleted database answers the same, through gRPC", async () => {
    const before = (await rpc.database("listBackups", { projectId }, h.tokens.deployer)).backups;
    const again = await rpc.database("deleteDatabase", { projectId }, h.tokens.deployer);
    expect(again.database.state).toBe("DATABASE_STATE_DELETED");
    expect(again.finalBackup.id).toBe(before.find((backup: any) => backup.state === "BACKUP_STATE_SUCCEEDED").id);
    expect((await rpc.database("listBackups", { projectId }, h.tokens.deployer)).backups).toEqual(before);
    expect(await grpcCode(rpc.database("deleteDatabase", { projectId: randomUUID() }, h.tokens.deployer))).toBe(grpc.status.NOT_FOUND);
    expect(await grpcCode(rpc.database("deleteDatabase", { projectId: "not-a-uuid" }, h.tokens.deployer))).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("Ensure after the delete makes a new, empty database with a new password; the final backup restores into it", async () => {
    const finalBackup = (await rpc.database("listBackups", { projectId }, h.tokens.deployer)).backups.find(
      (backup: any) => backup.state === "BACKUP_STATE_SUCCEEDED",
    );
    const oldPasswords = [...secrets];
    const ensured = await rpc.database("ensure", { projectId }, h.tokens.deployer);
    expect(ensured.created).toBe(true);
    expect(ensured.database).toMatchObject({ slug, state: "DATABASE_STATE_READY" });
    const { databaseUrl } = await rpc.database("getConnection", { projectId }, h.tokens.deployer);
    secrets.push(databaseUrl, new URL(databaseUrl).password);
    expect(oldPasswords).not.toContain(new URL(databaseUrl).password);
    await expect(queryUrl(databaseUrl, "SELECT id FROM orders")).rejects.toThrow(/does not exist/);

    const restored = await rpc.database("restoreBackup", { projectId, backupId: finalBackup.id }, h.tokens.deployer);
    expect(restored.restored.id).toBe(finalBackup.id);
    expect((await queryUrl(databaseUrl, "SELECT id FROM orders")).rows).toEqual([{ id: 42 }]);
  });

  it("with skip_final_backup deletes without a backup, and says so in the log at warn", async () => {
    const id = randomUUID();
    await ensureWithData(id, "no-backup-shop");
    const database = (await rpc.database("getDatabase", { projectId: id }, h.tokens.admin)).database;
    const footprint = await processFootprint(h.dataDir, id, "no-backup-shop", database.port);
    const deleted = await rpc.database("deleteDatabase", { projectId: id, skipFinalBackup: true }, h.tokens.admin);
    expect(deleted.database.state).toBe("DATABASE_STATE_DELETED");
    expect(deleted.finalBackup).toBeNull();
    expect(dumps((await rpc.database("listBackups", { projectId: id }, h.tokens.admin)).backups)).toEqual([]);
    const warning = h.logs.map((line) => JSON.parse(line)).find((line) => line.projectId === id && /WITHOUT a final backup/.test(line.msg));
    expect(warning?.level).toBe(40);
    expect(await processLeftovers(footprint)).toEqual([]);
  });

  it("finishes a delete cut short (state DELETING) on the next call", async () => {
    const id = randomUUID();
    await ensureWithData(id, "half-gone");
    const database = (await rpc.database("getDatabase", { projectId: id }, h.tokens.admin)).database;
    const footprint = await processFootprint(h.dataDir, id, "half-gone", database.port);
    // As a delete leaves it when the service dies right after recording it: everything still there.
    await h.app.store.updateDatabase(id, { state: "deleting" });
    expect((await rpc.database("getDatabase", { projectId: id }, h.tokens.admin)).database.state).toBe("DATABASE_STATE_DELETING");
    const finished = await rpc.database("deleteDatabase", { projectId: id }, h.tokens.admin);
    expect(finished.database.state).toBe("DATABASE_STATE_DELETED");
    expect(await processLeftovers(footprint)).toEqual([]);
  });

  it("finishes a delete cut short before Ensure makes the new database", async () => {
    const id = randomUUID();
    const oldUrl = await ensureWithData(id, "half-gone-again");
    await h.app.store.updateDatabase(id, { state: "deleting" });
    const ensured = await rpc.database("ensure", { projectId: id }, h.tokens.admin);
    expect(ensured.created).toBe(true);
    const { databaseUrl } = await rpc.database("getConnection", { projectId: id }, h.tokens.admin);
    secrets.push(databaseUrl, new URL(databaseUrl).password);
    expect(new URL(databaseUrl).password).not.toBe(new URL(oldUrl).password);
    await expect(queryUrl(databaseUrl, "SELECT id FROM orders")).rejects.toThrow(/does not exist/);
  });

  it("never writes a password, URL or token to the log", () => {
    const logs = h.logs.join("");
    for (const secret of secrets) expect(logs).not.toContain(secret);
  });
});

describe("a delete cut short by kill -9", () => {
  const { command: NODE, args: START_ARGS } = serviceCommand();
  const dir = mkdtempSync(join(tmpdir(), "sota-delete-kill-"));
  chmodSync(dir, 0o755);
  const env = { SOTA_DATA_DIR: dir, SOTA_LISTEN: "127.0.0.1:0", SOTA_POOLER_PORTS: poolerPortsSetting(45), SOTA_BACKUP_MIN_FREE: "0" };
  const children: ChildProcess[] = [];

  afterAll(async () => {
    const running = children.filter((child) => child.exitCode === null && child.signalCode === null);
    const exits = running.map((child) => new Promise((resolve) => child.once("exit", resolve)));
    for (const child of running) child.kill("SIGTERM");
    await Promise.all(exits);
    await removeDataDir(dir);
  });

  /** The service as `npm start` runs it; `onLine` sees each output chunk as it arrives. */
  function start(onLine?: (text: string, child: ChildProcess) => void) {
    const child = spawn(NODE, START_ARGS, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let output = "";
    const take = (chunk: Buffer) => {
      output += chunk;
      onLine?.(output, child);
    };
    child.stdout!.on("data", take);
    child.stderr!.on("data", take);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const waitFor = async (pattern: RegExp): Promise<RegExpMatchArray> => {
      for (const deadline = Date.now() + 120_000; ; ) {
        const match = output.match(pattern);
        if (match) return match;
        if (child.exitCode !== null) throw new Error(`exited early: ${output}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}: ${output}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    return { child, exited, waitFor, output: () => output };
  }

  it("is finished by the next start: nothing is left but the final backup", async () => {
    const projectId = randomUUID();
    // SIGKILL the moment the removal starts: the state says deleting, the processes still run.
    const first = start((output, child) => {
      if (output.includes("removing the database from the host")) child.kill("SIGKILL");
    });
    const [, port] = await first.waitFor(/"address":"127\.0\.0\.1:(\d+)"/);
    const token = readFileSync(join(dir, "admin.token"), "utf8").trim();
    const call = (method: string, path: string) =>
      fetch(`http://127.0.0.1:${port}/v1/projects/${projectId}/database${path}`, { method, headers: { authorization: `Bearer ${token}` } });
    const ensured = (await (await call("POST", "")).json()) as any;
    expect(ensured.database.state).toBe("DATABASE_STATE_READY");
    const footprint = await processFootprint(dir, projectId, ensured.database.slug, ensured.database.port);

    await call("DELETE", "").catch(() => undefined);
    await first.exited;
    const state = new Database(join(dir, "state.db"), { readonly: true });
    const row = state.prepare("SELECT state FROM databases WHERE project_id = ?").get(projectId) as { state: string };
    state.close();
    expect(row.state).toBe("deleting");

    const second = start();
    const [, port2] = await second.waitFor(/"address":"127\.0\.0\.1:(\d+)"/);
    await second.waitFor(/"msg":"database deleted"/);
    expect(await processLeftovers(footprint)).toEqual([]);
    const described = (await (
      await fetch(`http://127.0.0.1:${port2}/v1/projects/${projectId}/database`, { headers: { authorization: `Bearer ${token}` } })
    ).json()) as any;
    expect(described.database.state).toBe("DATABASE_STATE_DELETED");
    const listed = (await (
      await fetch(`http://127.0.0.1:${port2}/v1/projects/${projectId}/database/backups`, { headers: { authorization: `Bearer ${token}` } })
    ).json()) as any;
    expect(dumps(listed.backups).map((backup: any) => [backup.kind, backup.state])).toEqual([["BACKUP_KIND_FINAL", "BACKUP_STATE_SUCCEEDED"]]);
  });
});

const docker = await dockerTestsRun("Docker delete tests");

describe.skipIf(!docker.run)("DeleteDatabase on the Docker runtime", () => {
  const bed = new DockerTestBed();
  const projectId = randomUUID();
  const slug = `del-${bed.runId}`;
  let h: Harness;
  let rpc: GrpcClients;

  beforeAll(async () => {
    h = await startHarness(
      await dockerServiceEnv(docker.engine, {
        SOTA_DOCKER_NETWORK: "per-project",
        SOTA_BACKUP_MIN_FREE: "0",
      }),
    );
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
  });

  afterAll(async () => {
    rpc?.close();
    await h?.stop();
    await removeProjectObjects(projectId);
  });

  it("takes the final backup, leaves no container, volume or network, and a new Ensure restores it", async () => {
    await rpc.database("ensure", { projectId, slug }, h.tokens.deployer);
    expect(await dockerLeftovers(projectId)).not.toEqual([]);
    const { databaseUrl: oldUrl } = await rpc.database("getConnection", { projectId }, h.tokens.deployer);
    await h.app.runtime.appQuery({ projectId, slug }, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)");

    const deleted = await rpc.database("deleteDatabase", { projectId }, h.tokens.deployer);
    expect(deleted.database.state).toBe("DATABASE_STATE_DELETED");
    expect(deleted.finalBackup).toMatchObject({ kind: "BACKUP_KIND_FINAL", state: "BACKUP_STATE_SUCCEEDED" });
    expect(await dockerLeftovers(projectId)).toEqual([]);

    const ensured = await rpc.database("ensure", { projectId }, h.tokens.deployer);
    expect(ensured.created).toBe(true);
    const { databaseUrl } = await rpc.database("getConnection", { projectId }, h.tokens.deployer);
    expect(new URL(databaseUrl).password).not.toBe(new URL(oldUrl).password);
    await rpc.database("restoreBackup", { projectId, backupId: deleted.finalBackup.id }, h.tokens.deployer);
    expect(await h.app.runtime.appQuery({ projectId, slug }, "SELECT v FROM kept")).toEqual([{ v: "7" }]);
    expect(h.logs.join("")).not.toContain(new URL(oldUrl).password);
  });
});
