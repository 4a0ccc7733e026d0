// OffsiteRecovery, the reading side of disaster recovery, against a real
// S3-compatible server (s3rver on 127.0.0.1): a project's manifest (absent,
// damaged, or the bucket down), a backup fetched back whole or not at all,
// a generation's WAL as a recovery reads it (the whole segment over a stale
// partial copy; the partial copy padded back to its segment's size, and
// refused when it says no size or is longer than it), the WAL objects as
// records, and the projects the bucket holds a manifest of.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DomainError } from "../../src/errors.js";
import { createLogger } from "../../src/log.js";
import { buildManifest, writeManifest, type ProjectManifest } from "../../src/offsite/manifest.js";
import { ObjectLayout } from "../../src/offsite/object-layout.js";
import { S3ObjectStore } from "../../src/offsite/object-store.js";
import { uploadEncrypted } from "../../src/offsite/object-transfer.js";
import { OffsiteMetrics } from "../../src/offsite/offsite-metrics.js";
import { OffsiteRecovery, projectsInBucket } from "../../src/offsite/offsite-recovery.js";
import { Keyring, masterKey } from "../../src/secrets/keyring.js";
import { newDatabaseRecord } from "../../src/store/records.js";
import { startS3Server, type S3Server } from "../support/s3-server.js";

const SEGMENT = 16 * 1024 * 1024;
const GENERATION = "20261130T120000Z";

let s3: S3Server;
beforeAll(async () => {
  s3 = await startS3Server();
});
afterAll(async () => {
  await s3?.destroy();
});

let dir: string;
let prefix: string;
let layout: ObjectLayout;
let objects: S3ObjectStore;
let keyring: Keyring;
let recovery: OffsiteRecovery;
let registry: Registry;
let logs: string[];
const projectId = randomUUID();

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "sota-offsite-recovery-"));
  prefix = `r-${randomBytes(4).toString("hex")}`;
  layout = new ObjectLayout(prefix);
  objects = new S3ObjectStore(s3.config());
  keyring = new Keyring([masterKey(randomBytes(32))]);
  registry = new Registry();
  logs = [];
  recovery = new OffsiteRecovery({
    objects,
    prefix,
    keyring,
    tempDir: join(dir, ".offsite-tmp"),
    metrics: new OffsiteMetrics(registry),
    logger: createLogger({ level: "debug", destination: { write: (line: string) => void logs.push(line) } }),
  });
});
afterEach(() => {
  objects.close();
  rmSync(dir, { recursive: true, force: true });
});

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

async function put(name: { key: string; name: string }, bytes: Buffer, metadata: Record<string, string> = {}): Promise<void> {
  await uploadEncrypted({ objects, keyring }, name, Readable.from([bytes]), { sha256: sha256(bytes), sizeBytes: bytes.length }, metadata);
}

function manifestWith(backupBytes: Buffer, backupId: string): ProjectManifest {
  const database = newDatabaseRecord({ projectId, slug: "shop", runtime: "process", sealedPassword: "sealed" }, new Date("2026-11-30T10:00:00Z"));
  const backup = {
    id: backupId,
    projectId,
    slug: "shop",
    kind: "scheduled" as const,
    state: "succeeded" as const,
    sizeBytes: backupBytes.length,
    sha256: sha256(backupBytes),
    startedAt: new Date("2026-11-30T11:00:00Z"),
    finishedAt: new Date("2026-11-30T11:00:05Z"),
    expiresAt: null,
    error: null,
    verification: null,
    verifiedAt: null,
    verificationError: null,
    format: "dump" as const,
    walGeneration: null,
    walStartSegment: null,
  };
  const copy = { backupId, projectId, state: "copied" as const, attempts: 1, error: null, objectKey: layout.backup(projectId, backupId, "dump").key, sha256: backup.sha256, sizeBytes: backup.sizeBytes, copiedAt: new Date(), nextAttemptAt: null };
  return buildManifest(projectId, database, [backup], [copy], [], new Date());
}

describe("OffsiteRecovery", () => {
  it("finds no manifest where the bucket holds none, and reads back the one written", async () => {
    expect(await recovery.manifest(projectId)).toBeUndefined();
    const manifest = manifestWith(Buffer.from("dump"), "20261130t110000000z-aaaaaaaaaaaa");
    await writeManifest({ objects, keyring }, layout, manifest);
    expect(await recovery.manifest(projectId)).toEqual(manifest);
  });

  it("refuses, with data_loss, a manifest out of shape or naming another project, even one this key wrote", async () => {
    const good = manifestWith(Buffer.from("dump"), "20261130t110000000z-aaaaaaaaaaaa");
    const bad: [string, unknown][] = [
      ["a checksum that is none", { ...good, backups: [{ ...good.backups[0]!, sha256: "zz" }] }],
      ["a backup id that is a path", { ...good, backups: [{ ...good.backups[0]!, id: "../../etc" }] }],
      ["a port that is none", { ...good, database: { ...good.database!, port: 70000 } }],
      ["a WAL generation that is a path", { ...good, walGenerations: ["../x"] }],
      ["another project", { ...good, projectId: randomUUID() }],
    ];
    for (const [what, manifest] of bad) {
      await put(layout.manifest(projectId), Buffer.from(JSON.stringify(manifest)));
      const refused = await recovery.manifest(projectId).catch((error: unknown) => error);
      expect(refused, what).toBeInstanceOf(DomainError);
      expect((refused as DomainError).kind, what).toBe("data_loss");
    }
    // A key the layout gives is what is used, whatever the manifest says.
    await put(layout.manifest(projectId), Buffer.from(JSON.stringify({ ...good, backups: [{ ...good.backups[0]!, key: "elsewhere/secret" }] })));
    expect((await recovery.manifest(projectId))!.backups[0]!.key).toBe(layout.backup(projectId, good.backups[0]!.id, "dump").key);
  });

  it("says unavailable, logs and counts, when the bucket does not answer", async () => {
    await s3.stop();
    try {
      const refused = await recovery.manifest(projectId).catch((error: unknown) => error);
      expect((refused as DomainError).kind).toBe("unavailable");
      expect((refused as Error).message).toMatch(/did not answer/);
    } finally {
      await s3.restart();
    }
    expect(logs.some((line) => line.includes("reading from object storage failed"))).toBe(true);
    expect(await registry.getSingleMetricAsString("sota_offsite_copy_failures_total")).toMatch(/kind="download"\} 1/);
  });

  it("fetches a backup back whole and checked, or leaves nothing", async () => {
    const bytes = randomBytes(200_000);
    const id = "20261130t110000000z-bbbbbbbbbbbb";
    const manifest = manifestWith(bytes, id);
    await put(layout.backup(projectId, id, "dump"), bytes);
    const path = join(dir, "backups", "shop", `${id}.sql.gz`);
    await recovery.fetchBackup(projectId, manifest.backups[0]!, path);
    expect(readFileSync(path).equals(bytes)).toBe(true);

    const other = join(dir, "backups", "shop", "other.sql.gz");
    const refused = await recovery.fetchBackup(projectId, { ...manifest.backups[0]!, sha256: sha256(Buffer.from("not it")) }, other).catch((error: unknown) => error);
    expect((refused as DomainError).kind).toBe("data_loss");
    expect(existsSync(other)).toBe(false);
  });

  it("streams a generation's WAL: the whole segment over a stale partial copy, the partial one padded back to its size", async () => {
    const whole = randomBytes(SEGMENT);
    const written = randomBytes(70_000);
    await put(layout.wal(projectId, GENERATION, "000000010000000000000001"), whole);
    await put(layout.wal(projectId, GENERATION, "000000010000000000000001.partial"), randomBytes(1000), { "sota-segment-bytes": String(SEGMENT) });
    await put(layout.wal(projectId, GENERATION, "000000010000000000000002.partial"), written, { "sota-segment-bytes": String(SEGMENT) });
    await put(layout.wal(projectId, GENERATION, "00000002.history"), Buffer.from("1\t0/3000000\tno recovery target specified\n"));

    const source = recovery.walSource(projectId, GENERATION);
    expect(await source.files()).toEqual([
      { name: "000000010000000000000001", complete: true },
      { name: "000000010000000000000002", complete: false },
      { name: "00000002.history", complete: true },
    ]);
    expect((await buffer(await source.open("000000010000000000000001"))).equals(whole)).toBe(true);
    const padded = await buffer(await source.open("000000010000000000000002"));
    expect(padded.length).toBe(SEGMENT);
    expect(padded.subarray(0, written.length).equals(written)).toBe(true);
    expect(padded.subarray(written.length).every((byte) => byte === 0)).toBe(true);
    await expect(source.open("000000010000000000000009")).rejects.toMatchObject({ kind: "not_found" });
  });

  it("refuses a partial copy that says no segment size, or is longer than its segment: data_loss", async () => {
    await put(layout.wal(projectId, GENERATION, "000000010000000000000003.partial"), randomBytes(100));
    await put(layout.wal(projectId, GENERATION, "000000010000000000000004.partial"), randomBytes(2 * 1024 * 1024), { "sota-segment-bytes": String(1024 * 1024) });
    const source = recovery.walSource(projectId, GENERATION);
    await expect(source.open("000000010000000000000003")).rejects.toMatchObject({ kind: "data_loss" });
    const tooLong = await buffer(await source.open("000000010000000000000004")).catch((error: unknown) => error);
    expect((tooLong as DomainError).kind).toBe("data_loss");
  });

  it("records the WAL objects it finds, and lists only projects with a manifest", async () => {
    const bytes = randomBytes(5000);
    await put(layout.wal(projectId, GENERATION, "000000010000000000000005"), bytes);
    await s3.write(`${prefix}/${projectId}/wal/${GENERATION}/not-a-wal-file`, Buffer.from("x"));
    const records = await recovery.walObjects(projectId);
    expect(records).toEqual([{ projectId, generation: GENERATION, file: "000000010000000000000005", sha256: sha256(bytes), sizeBytes: bytes.length, copiedAt: expect.any(Date) }]);

    expect(await projectsInBucket(objects, prefix)).toEqual([]);
    await writeManifest({ objects, keyring }, layout, manifestWith(Buffer.from("d"), "20261130t110000000z-cccccccccccc"));
    await s3.write(`${prefix}/not-a-project/manifest`, Buffer.from("x"));
    expect(await projectsInBucket(objects, prefix)).toEqual([projectId]);
  });
});
