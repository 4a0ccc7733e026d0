// Off-host copies against hostile parties:
// - a tenant (project token) asking for another project's backups, or whose
//   database server writes oddly named files into its WAL archive, must not
//   make the service read or write another project's objects;
// - the bucket's owner (or anyone who can write the bucket) moving one
//   project's object under another's key must not get it restored there;
// - the S3 secret must never reach a log line, an error, a metric or a response.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backupFilePath } from "../../src/backup/backup-paths.js";
import { DomainError } from "../../src/errors.js";
import { createLogger } from "../../src/log.js";
import { S3ObjectStore } from "../../src/offsite/object-store.js";
import { OffsiteCopies } from "../../src/offsite/offsite-copies.js";
import { OffsiteMetrics } from "../../src/offsite/offsite-metrics.js";
import type { PointInTimeRecovery, RuntimeTarget, WalGeneration } from "../../src/runtime/runtime.js";
import { Keyring, masterKey } from "../../src/secrets/keyring.js";
import { newBackupRecord, newDatabaseRecord, type BackupRecord } from "../../src/store/records.js";
import { SqliteStore } from "../../src/store/sqlite-store.js";
import { startHarness, type Harness } from "../support/app-harness.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";
import { startS3Server, type S3Server } from "../support/s3-server.js";

const SECRET = `sota-s3-secret-${randomBytes(12).toString("hex")}`;
let s3: S3Server;
beforeAll(async () => {
  s3 = await startS3Server({ secretAccessKey: SECRET });
});
afterAll(async () => {
  await s3?.destroy();
});

describe("off-host copies: one project's objects stay its own", () => {
  const A = randomUUID();
  const B = randomUUID();
  let dir: string;
  let store: SqliteStore;
  let copies: OffsiteCopies;
  let objects: S3ObjectStore;
  const logs: string[] = [];
  const prefix = `iso-${randomBytes(3).toString("hex")}`;
  /** Whatever names the tenant's server put in its archive: the runtime lists them as they are. */
  const hostile: WalGeneration[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "sota-offsite-sec-"));
    store = new SqliteStore(join(dir, "state.db"));
    objects = new S3ObjectStore(s3.config());
    const pitr: Pick<PointInTimeRecovery, "walGenerations" | "readWal"> = {
      walGenerations: async (target: RuntimeTarget) => (target.projectId === A ? hostile : []),
      readWal: () => Readable.from([Buffer.from("wal bytes")]),
    };
    copies = new OffsiteCopies({
      objects,
      prefix,
      keyring: new Keyring([masterKey(randomBytes(32))]),
      store,
      runtime: { kind: "process", pitr: pitr as PointInTimeRecovery },
      metrics: new OffsiteMetrics(new Registry()),
      logger: createLogger({ destination: { write: (line: string) => void logs.push(line) } }),
      localFile: (record) => backupFilePath(join(dir, "backups"), record.slug, record.id),
      tempDir: join(dir, "tmp"),
      syncIntervalMs: 1_000,
    });
  });
  afterAll(async () => {
    await copies?.close();
    objects?.close();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function backup(projectId: string, slug: string, content: string): Promise<BackupRecord> {
    const id = `20261126t030000000z-${randomBytes(6).toString("hex")}`;
    const record = newBackupRecord({ id, projectId, slug, kind: "manual", startedAt: new Date() });
    const path = backupFilePath(join(dir, "backups"), slug, id);
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, content);
    await store.insertBackup(record);
    return store.updateBackup(id, { state: "succeeded", sizeBytes: content.length, sha256: createHash("sha256").update(content).digest("hex"), finishedAt: new Date() });
  }

  it("never restores another project's object moved under this project's key: data_loss, not its rows", async () => {
    const content = "the same bytes in both projects: only the object's name tells them apart";
    const ofA = await backup(A, "app-a", content);
    const ofB = await backup(B, "app-b", content);
    await copies.sync();
    const keyA = copies.layout.backup(A, ofA.id, "dump").key;
    const keyB = copies.layout.backup(B, ofB.id, "dump").key;
    // Whoever can write the bucket puts A's object (and metadata) where B's was.
    const stolen = await s3.read(keyA);
    await s3.write(keyB, stolen.bytes, stolen.metadata);
    const path = backupFilePath(join(dir, "backups"), "app-b", ofB.id);
    rmSync(path);
    const error = await copies.ensureLocalCopy(ofB, path).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).kind).toBe("data_loss");
  });

  it("never lets a WAL file or generation name leave the project's prefix", async () => {
    await store.insertDatabase({ ...newDatabaseRecord({ projectId: A, slug: "app-a", runtime: "process", sealedPassword: "v1.k.x" }, new Date()), state: "ready" });
    const segment = (name: string) => ({ name, bytes: 9, complete: true });
    hostile.push(
      {
        id: "20261126T000000Z",
        streaming: true,
        lastReceivedAt: new Date(),
        bytes: 0,
        segments: [
          segment(`../../${B}/backups/20261126t030000000z-aaaaaaaaaaaa.dump`),
          segment("000000010000000000000001/../../../x"),
          segment("000000010000000000000001.partial"),
          segment("00000001000000000000000g"),
          segment("000000010000000000000002"),
        ],
      },
      { id: `../${B}`, streaming: false, lastReceivedAt: new Date(), bytes: 0, segments: [segment("000000010000000000000003")] },
    );
    await copies.sync();
    const everything = await s3.keys(`${prefix}/`);
    expect(everything.filter((key) => key.includes("/wal/"))).toEqual([`${prefix}/${A}/wal/20261126T000000Z/000000010000000000000002`]);
    expect(everything.filter((key) => key.startsWith(`${prefix}/${B}/`)).sort()).toEqual(
      [`${prefix}/${B}/manifest`, `${prefix}/${B}/backups/${(await store.listBackups(B))[0]!.id}.dump`].sort(),
    );
    expect(everything.every((key) => key.startsWith(`${prefix}/${A}/`) || key.startsWith(`${prefix}/${B}/`))).toBe(true);
    expect(logs.filter((line) => line.includes("unexpected name")).length).toBe(5);
  });
});

describe("off-host copies: the S3 secret stays secret", () => {
  let h: Harness;
  beforeAll(async () => {
    // Keys the server does not know: every request is refused, so errors, log lines and FAILED states are all produced.
    h = await startHarness(
      s3.env({
        SOTA_BACKUP_S3_ACCESS_KEY_ID: "AKIAUNKNOWNKEY000000",
        SOTA_BACKUP_S3_SECRET_ACCESS_KEY: SECRET,
        SOTA_BACKUP_S3_SYNC_SECONDS: "1",
        SOTA_POOLER_PORTS: poolerPortsSetting(67),
      }),
    );
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("appears in no log line, error, metric or response, while copies fail", async () => {
    const headers = { authorization: `Bearer ${h.tokens.project}` };
    // A project this service has no record of is looked for in the bucket first (disaster recovery): refused, so the Ensure is unavailable, and says why without the key.
    const lookup = await fetch(`${h.app.url}/v1/projects/${h.projectId}/database`, { method: "POST", headers });
    expect(lookup.status).toBe(503);
    const refusedEnsure = await lookup.text();
    expect(refusedEnsure).toMatch(/did not answer.*nothing was created/);
    // With the lookup switched off, Ensure makes the database; the copies then fail as before.
    h.env["SOTA_BACKUP_S3_RECOVER_ON_ENSURE"] = "false";
    await h.restart();
    expect((await fetch(`${h.app.url}/v1/projects/${h.projectId}/database`, { method: "POST", headers })).status).toBe(200);
    const created = await (await fetch(`${h.app.url}/v1/projects/${h.projectId}/database/backups?wait=true`, { method: "POST", headers })).json();
    const deadline = Date.now() + 60_000;
    let listing = "";
    for (;;) {
      listing = await (await fetch(`${h.app.url}/v1/projects/${h.projectId}/database/backups`, { headers })).text();
      if (listing.includes("OFFSITE_STATE_FAILED") || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(listing).toContain("OFFSITE_STATE_FAILED");
    expect(listing).toMatch(/InvalidAccessKeyId|does not exist/);
    const metrics = await (await fetch(`${h.app.url}/metrics`, { headers: { authorization: `Bearer ${h.tokens.admin}` } })).text();
    expect(metrics).toMatch(/sota_offsite_copy_failures_total\{kind="backup"\} [1-9]/);
    // A restore of the backup whose file is gone (and was never copied) fails: its error is looked at too.
    const slug = (await h.app.store.getDatabase(h.projectId))!.slug;
    rmSync(join(h.dataDir, "backups", slug, `${created.backup.id}.sql.gz`));
    // Another project's token reaches neither the backup nor, through it, its off-host copy.
    const other = { authorization: `Bearer ${h.tokens.other}` };
    const viaOwnPath = await fetch(`${h.app.url}/v1/projects/${h.otherProjectId}/database/backups/${created.backup.id}/restore`, { method: "POST", headers: other });
    const viaVictimPath = await fetch(`${h.app.url}/v1/projects/${h.projectId}/database/backups/${created.backup.id}/restore`, { method: "POST", headers: other });
    expect([viaOwnPath.status, viaVictimPath.status]).toEqual([404, 403]);
    expect(h.logs.some((line) => line.includes("fetching its off-host copy"))).toBe(false);
    const restore = await (await fetch(`${h.app.url}/v1/projects/${h.projectId}/database/backups/${created.backup.id}/restore`, { method: "POST", headers })).text();
    const database = await (await fetch(`${h.app.url}/v1/projects/${h.projectId}/database`, { headers })).text();
    for (const text of [h.logs.join("\n"), metrics, listing, restore, database, JSON.stringify(created), refusedEnsure]) {
      expect(text).not.toContain(SECRET);
    }
    expect(h.logs.some((line) => line.includes('"level":50') && line.includes("off-host copy of a backup failed"))).toBe(true);
  });
});
