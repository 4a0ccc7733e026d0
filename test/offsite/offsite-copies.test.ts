// The off-host copier against a real S3-compatible server (s3rver on
// 127.0.0.1, its own process), a real SQLite state and real files: what is
// copied, how it is encrypted and checked, how failures are retried and
// reported, and how retention reaches the bucket.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { backupFilePath } from "../../src/backup/backup-paths.js";
import { DomainError } from "../../src/errors.js";
import { createLogger } from "../../src/log.js";
import { readManifest } from "../../src/offsite/manifest.js";
import { ObjectDecryptor } from "../../src/offsite/object-cipher.js";
import { S3ObjectStore } from "../../src/offsite/object-store.js";
import { uploadEncrypted } from "../../src/offsite/object-transfer.js";
import { OffsiteCopies } from "../../src/offsite/offsite-copies.js";
import { OffsiteMetrics } from "../../src/offsite/offsite-metrics.js";
import { Keyring, masterKey } from "../../src/secrets/keyring.js";
import { newBackupRecord, newDatabaseRecord, type BackupRecord } from "../../src/store/records.js";
import { SqliteStore } from "../../src/store/sqlite-store.js";
import { startS3Server, type S3Server } from "../support/s3-server.js";
import { DirectoryWalArchive, SEGMENT_BYTES } from "../support/wal-archive.js";

const MARKER = "PLAINTEXT-MARKER-0c9f";
const PART = 5 * 1024 * 1024;

let s3: S3Server;
beforeAll(async () => {
  s3 = await startS3Server();
});
afterAll(async () => {
  await s3?.destroy();
});

interface Bed {
  readonly dir: string;
  readonly store: SqliteStore;
  readonly keyring: Keyring;
  readonly copies: OffsiteCopies;
  readonly objects: S3ObjectStore;
  readonly registry: Registry;
  readonly logs: string[];
  readonly wal: DirectoryWalArchive;
  readonly clock: { now: Date };
  readonly projectId: string;
}

let bed: Bed;
const beds: Bed[] = [];

function newBed(options: { prefix?: string; keyring?: Keyring; store?: SqliteStore; dir?: string } = {}): Bed {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "sota-offsite-"));
  const store = options.store ?? new SqliteStore(join(dir, "state.db"));
  const keyring = options.keyring ?? new Keyring([masterKey(randomBytes(32))]);
  const registry = new Registry();
  const logs: string[] = [];
  const objects = new S3ObjectStore(s3.config(), { partSize: PART, queueSize: 1 });
  const wal = new DirectoryWalArchive(join(dir, "wal"));
  const clock = { now: new Date("2026-11-26T12:00:00Z") };
  const copies = new OffsiteCopies({
    objects,
    prefix: options.prefix ?? `t-${randomBytes(4).toString("hex")}`,
    keyring,
    store,
    runtime: wal.runtime(),
    metrics: new OffsiteMetrics(registry),
    logger: createLogger({ level: "debug", destination: { write: (line: string) => void logs.push(line) } }),
    localFile: (record) => backupFilePath(join(dir, "backups"), record.slug, record.id),
    tempDir: join(dir, "backups", ".offsite-tmp"),
    syncIntervalMs: 1_000,
    now: () => clock.now,
  });
  const made = { dir, store, keyring, copies, objects, registry, logs, wal, clock, projectId: randomUUID() };
  beds.push(made);
  return made;
}

beforeEach(() => {
  bed = newBed();
});
afterEach(async () => {
  for (const made of beds.splice(0)) {
    await made.copies.close();
    made.objects.close();
    await made.store.close();
    rmSync(made.dir, { recursive: true, force: true });
  }
});

let backups = 0;

/** A succeeded backup whose file holds `content`, recorded as the backup manager records one. */
async function backup(target: Bed, content: Buffer, projectId = target.projectId): Promise<BackupRecord> {
  const startedAt = new Date(Date.UTC(2026, 10, 26, 3, 0, 0, ++backups));
  const id = `20261126t030000${String(backups).padStart(3, "0")}z-${randomBytes(6).toString("hex")}`;
  const record = newBackupRecord({ id, projectId, slug: "my-app", kind: "manual", startedAt });
  const path = backupFilePath(join(target.dir, "backups"), record.slug, record.id);
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, content);
  await target.store.insertBackup(record);
  return target.store.updateBackup(record.id, {
    state: "succeeded",
    sizeBytes: content.length,
    sha256: createHash("sha256").update(content).digest("hex"),
    finishedAt: startedAt,
  });
}

async function metric(target: Bed, name: string): Promise<string> {
  return (await target.registry.metrics()).split("\n").filter((line) => line.startsWith(name)).join("\n");
}

async function offsiteOf(target: Bed, record: BackupRecord) {
  const [listed] = await target.copies.describe(record.projectId, [record]);
  return listed!.offsite!;
}

function dumpLike(bytes: number): Buffer {
  const line = Buffer.from(`INSERT INTO t VALUES ('${MARKER}');\n`);
  return Buffer.concat([Buffer.alloc(bytes - line.length, "x"), line]);
}

describe("copying backups off-host", () => {
  it("copies a succeeded backup encrypted: COPIED in the listing, ciphertext in the bucket, its sha256 in the metadata and the state", async () => {
    const content = dumpLike(200_000);
    const record = await backup(bed, content);
    expect((await offsiteOf(bed, record)).state).toBe("pending");

    await bed.copies.sync();

    const offsite = await offsiteOf(bed, record);
    expect(offsite).toMatchObject({ state: "copied", attempts: 1, error: null });
    expect(offsite.copiedAt).toEqual(bed.clock.now);
    const key = bed.copies.layout.backup(bed.projectId, record.id, "dump").key;
    const stored = await s3.read(key);
    expect(stored.metadata).toMatchObject({ "sota-sha256": record.sha256, "sota-size": String(content.length), "sota-format": "1" });
    expect(stored.bytes.includes(MARKER)).toBe(false);
    expect(stored.bytes.includes(content.subarray(0, 32))).toBe(false);
    expect((await bed.store.listOffsiteCopies(bed.projectId))[0]).toMatchObject({ objectKey: key, sha256: record.sha256, sizeBytes: content.length });
    expect(await metric(bed, "sota_offsite_last_success_timestamp_seconds")).toContain(String(bed.clock.now.getTime() / 1000));
    expect(await metric(bed, "sota_offsite_pending_objects")).toMatch(/ 0$/);

    // The stream back decrypts to the very bytes, checked.
    expect((await buffer(await bed.copies.openBackup(record))).equals(content)).toBe(true);
    // The manifest names it, so a fresh host finds it.
    const manifest = await readManifest({ objects: bed.objects, keyring: bed.keyring }, bed.copies.layout, bed.projectId);
    expect(manifest.backups.map((entry) => [entry.id, entry.key, entry.sha256])).toEqual([[record.id, key, record.sha256]]);
  });

  it("streams: an object sixteen times the part size goes up while far less than the object is ever held in memory", async () => {
    // The source is a generator: its bytes exist only from when it yields
    // them until the pipeline lets them go. Every MiB, a full garbage
    // collection, then the Buffer memory still alive is sampled. Were any
    // stage (check, encryption, upload) to hold the object whole, the sample
    // at the last yield would be about the object's size; streamed, the peak
    // stays near the upload's own parts (queueSize 1 × 5 MiB, plus the one
    // being filled). What it does not prove: anything about s3rver's memory
    // (another process), or memory outside Buffers.
    const total = 16 * PART;
    const piece = 64 * 1024;
    const hash = createHash("sha256");
    const pieces = Array.from({ length: 256 }, (_, index) => Buffer.alloc(piece, index));
    for (let sent = 0; sent < total; sent += piece) hash.update(pieces[(sent / piece) % 256]!);
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    gc();
    const baseline = process.memoryUsage().arrayBuffers;
    let peak = 0;
    async function* source() {
      for (let sent = 0; sent < total; sent += piece) {
        if (sent % (1024 * 1024) === 0) {
          gc();
          peak = Math.max(peak, process.memoryUsage().arrayBuffers - baseline);
        }
        yield Buffer.from(pieces[(sent / piece) % 256]!);
      }
    }
    const ref = bed.copies.layout.backup(bed.projectId, "20261126t030000999z-aaaaaaaaaaaa", "dump");
    const sent = await uploadEncrypted({ objects: bed.objects, keyring: bed.keyring }, ref, Readable.from(source()), { sha256: hash.digest("hex"), sizeBytes: total });
    expect(sent).toBeGreaterThan(total);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(total / 2);
    const stored = await s3.read(ref.key);
    expect(stored.bytes.length).toBe(sent);
  });

  it("refuses to copy a local file that is not the bytes the backup recorded, and leaves nothing in the bucket", async () => {
    const record = await backup(bed, dumpLike(50_000));
    const path = backupFilePath(join(bed.dir, "backups"), record.slug, record.id);
    const damaged = readFileSync(path);
    damaged[100]! ^= 0xff;
    writeFileSync(path, damaged);
    await bed.copies.sync();
    const offsite = await offsiteOf(bed, record);
    expect(offsite).toMatchObject({ state: "failed", attempts: 1 });
    expect(offsite.error).toMatch(/not the ones recorded/);
    expect(await s3.keys(bed.copies.layout.projectPrefix(bed.projectId) + "backups/")).toEqual([]);
  });

  it("refuses a corrupted or truncated object with data_loss, and never writes it over the local file", async () => {
    const content = dumpLike(300_000);
    const record = await backup(bed, content);
    await bed.copies.sync();
    const key = bed.copies.layout.backup(bed.projectId, record.id, "dump").key;
    const original = await s3.read(key);
    const path = backupFilePath(join(bed.dir, "backups"), record.slug, record.id);
    rmSync(path);

    const flipped = Buffer.from(original.bytes);
    flipped[flipped.length >> 1]! ^= 0x01;
    await s3.write(key, flipped, original.metadata);
    const error = await bed.copies.ensureLocalCopy(record, path).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).kind).toBe("data_loss");
    expect(existsSync(path)).toBe(false);

    await s3.write(key, original.bytes.subarray(0, original.bytes.length - (64 * 1024 + 16)), original.metadata);
    const truncated = await buffer(await bed.copies.openBackup(record)).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect((truncated as DomainError).kind).toBe("data_loss");

    // Put back whole, it restores the local file, checked.
    await s3.write(key, original.bytes, original.metadata);
    await bed.copies.ensureLocalCopy(record, path);
    expect(readFileSync(path).equals(content)).toBe(true);
    expect(bed.logs.some((line) => line.includes("fetching its off-host copy"))).toBe(true);
  });

  it("a failing endpoint: FAILED with the reason, counted, logged at error level; retried with backoff until it is back, then COPIED", async () => {
    const record = await backup(bed, dumpLike(10_000));
    await s3.stop();
    try {
      await bed.copies.sync();
      const failed = await offsiteOf(bed, record);
      expect(failed).toMatchObject({ state: "failed", attempts: 1 });
      expect(failed.error).toMatch(/upload .*ECONNREFUSED|upload .*connect/i);
      expect(await metric(bed, "sota_offsite_copy_failures_total")).toContain('sota_offsite_copy_failures_total{kind="backup"} 1');
      expect(await metric(bed, "sota_offsite_pending_objects")).toMatch(/ 1$/);
      const line = bed.logs.map((text) => JSON.parse(text)).find((entry) => entry.msg?.startsWith("off-host copy of a backup failed"));
      expect(line).toMatchObject({ level: 50, projectId: bed.projectId, backupId: record.id, attempts: 1 });

      // Within the backoff (one interval after the first failure) nothing is tried.
      await bed.copies.sync();
      expect((await offsiteOf(bed, record)).attempts).toBe(1);
      bed.clock.now = new Date(bed.clock.now.getTime() + 1_000);
      await bed.copies.sync();
      expect(await offsiteOf(bed, record)).toMatchObject({ state: "failed", attempts: 2 });
      // The second retry waits twice as long.
      bed.clock.now = new Date(bed.clock.now.getTime() + 1_000);
      await bed.copies.sync();
      expect((await offsiteOf(bed, record)).attempts).toBe(2);
    } finally {
      await s3.restart();
    }
    bed.clock.now = new Date(bed.clock.now.getTime() + 1_000);
    await bed.copies.sync();
    expect(await offsiteOf(bed, record)).toMatchObject({ state: "copied", attempts: 3, error: null });
    expect(await metric(bed, "sota_offsite_pending_objects")).toMatch(/ 0$/);
    const text = bed.logs.join("\n") + (await bed.registry.metrics());
    expect(text).not.toContain(s3.secretAccessKey);
  });

  it("retention applies in the bucket: an expired backup's object goes with it, and one whose record vanished is swept", async () => {
    const kept = await backup(bed, dumpLike(1_000));
    const expired = await backup(bed, dumpLike(1_000));
    const vanished = await backup(bed, dumpLike(1_000));
    await bed.copies.sync();
    const key = (record: BackupRecord) => bed.copies.layout.backup(bed.projectId, record.id, "dump").key;
    expect(await s3.keys(bed.copies.layout.projectPrefix(bed.projectId) + "backups/")).toEqual([key(kept), key(expired), key(vanished)].sort());

    await bed.store.deleteBackup(expired.id);
    await bed.copies.backupsDeleted(bed.projectId, [expired]);
    // A crash between the local delete and the bucket's: the next pass finds its record gone.
    await bed.store.deleteBackup(vanished.id);
    await bed.copies.sync();

    expect(await s3.keys(bed.copies.layout.projectPrefix(bed.projectId) + "backups/")).toEqual([key(kept)]);
    expect((await bed.store.listOffsiteCopies()).map((copy) => copy.backupId)).toEqual([kept.id]);
    const manifest = await readManifest({ objects: bed.objects, keyring: bed.keyring }, bed.copies.layout, bed.projectId);
    expect(manifest.backups.map((entry) => entry.id)).toEqual([kept.id]);
  });
});

describe("copying WAL off-host", () => {
  const GENERATION = "20261126T000000Z";
  const segment = (n: number) => `00000001000000000000000${n}`;

  async function ready(target: Bed): Promise<void> {
    await target.store.insertDatabase({ ...newDatabaseRecord({ projectId: target.projectId, slug: "my-app", runtime: "process", sealedPassword: "v1.k.sealed" }, new Date()), state: "ready" });
  }

  async function decrypted(target: Bed, file: string): Promise<{ bytes: Buffer; metadata: Record<string, string> }> {
    const ref = target.copies.layout.wal(target.projectId, GENERATION, file);
    const stored = await s3.read(ref.key);
    return { bytes: await buffer(Readable.from([stored.bytes]).pipe(new ObjectDecryptor(target.keyring, ref.name))), metadata: stored.metadata };
  }

  it("copies complete segments and history files once, and the segment being written without its zero padding, again only when WAL arrived", async () => {
    await ready(bed);
    const one = randomBytes(SEGMENT_BYTES);
    await bed.wal.write(bed.projectId, GENERATION, segment(1), one);
    await bed.wal.write(bed.projectId, GENERATION, "00000001.history", Buffer.from("1\t0/3000000\tno recovery target specified\n"));
    const written = Buffer.concat([randomBytes(100_000), Buffer.alloc(4096), randomBytes(5)]);
    const partial = Buffer.concat([written, Buffer.alloc(SEGMENT_BYTES - written.length)]);
    await bed.wal.write(bed.projectId, GENERATION, `${segment(2)}.partial`, partial);
    bed.clock.now = new Date(Date.now() + 1_000);

    await bed.copies.sync();

    const prefix = bed.copies.layout.walPrefix(bed.projectId, GENERATION);
    expect(await s3.keys(prefix)).toEqual([`${prefix}00000001.history`, `${prefix}${segment(1)}`, `${prefix}${segment(2)}.partial`]);
    expect((await decrypted(bed, segment(1))).bytes.equals(one)).toBe(true);
    const copiedPartial = await decrypted(bed, `${segment(2)}.partial`);
    expect(copiedPartial.bytes.equals(written)).toBe(true);
    expect(copiedPartial.metadata).toMatchObject({ "sota-segment-bytes": String(SEGMENT_BYTES), "sota-size": String(written.length) });
    const recorded = await bed.store.listOffsiteWal(bed.projectId);
    expect(recorded.map((record) => record.file)).toEqual(["00000001.history", segment(1), `${segment(2)}.partial`]);

    // Nothing new: nothing copied again (the records keep their read time).
    await bed.copies.sync();
    expect(await bed.store.listOffsiteWal(bed.projectId)).toEqual(recorded);

    // More WAL in the partial segment: copied again at the next pass.
    const more = Buffer.concat([written, randomBytes(50_000)]);
    await bed.wal.write(bed.projectId, GENERATION, `${segment(2)}.partial`, Buffer.concat([more, Buffer.alloc(SEGMENT_BYTES - more.length)]));
    const future = new Date(bed.clock.now.getTime() + 10_000);
    utimesSync(join(bed.wal.root, bed.projectId, GENERATION, `${segment(2)}.partial`), future, future);
    await bed.copies.sync();
    expect((await decrypted(bed, `${segment(2)}.partial`)).bytes.equals(more)).toBe(true);

    // The segment completes: copied whole, and its partial copy goes.
    rmSync(join(bed.wal.root, bed.projectId, GENERATION, `${segment(2)}.partial`));
    const two = Buffer.concat([more, randomBytes(SEGMENT_BYTES - more.length)]);
    await bed.wal.write(bed.projectId, GENERATION, segment(2), two);
    await bed.copies.sync();
    expect(await s3.keys(prefix)).toEqual([`${prefix}00000001.history`, `${prefix}${segment(1)}`, `${prefix}${segment(2)}`]);
    expect((await decrypted(bed, segment(2))).bytes.equals(two)).toBe(true);

    const manifest = await readManifest({ objects: bed.objects, keyring: bed.keyring }, bed.copies.layout, bed.projectId);
    expect(manifest.walGenerations).toEqual([GENERATION]);
    expect(manifest.database).toMatchObject({ slug: "my-app", sealedPassword: "v1.k.sealed" });
  });

  it("a failing endpoint during WAL copy is counted, logged and retried; the WAL arrives once it is back", async () => {
    await ready(bed);
    await bed.wal.write(bed.projectId, GENERATION, segment(1), randomBytes(1024));
    await s3.stop();
    try {
      await bed.copies.sync();
      expect(await metric(bed, "sota_offsite_copy_failures_total")).toContain('kind="wal"} 1');
      expect(bed.logs.some((line) => line.includes('"level":50') && line.includes("off-host copy of WAL failed"))).toBe(true);
    } finally {
      await s3.restart();
    }
    bed.clock.now = new Date(bed.clock.now.getTime() + 1_000);
    await bed.copies.sync();
    expect((await bed.store.listOffsiteWal(bed.projectId)).map((record) => record.file)).toEqual([segment(1)]);
  });

  it("deletes the WAL and the manifest of a database the state has forgotten (its retention over)", async () => {
    await ready(bed);
    await bed.wal.write(bed.projectId, GENERATION, segment(1), randomBytes(1024));
    await bed.copies.sync();
    expect(await s3.keys(bed.copies.layout.projectPrefix(bed.projectId))).toHaveLength(2);

    await bed.store.deleteDatabase(bed.projectId);
    rmSync(join(bed.wal.root, bed.projectId), { recursive: true });
    await bed.copies.sync();
    expect(await s3.keys(bed.copies.layout.projectPrefix(bed.projectId))).toEqual([]);
    expect(await bed.store.listOffsiteWal(bed.projectId)).toEqual([]);
  });

  it("rewrites the manifest when its database changes (deleted, rotated), not only its backups: a recovery must not bring back a deleted database, or an old password", async () => {
    await ready(bed);
    await backup(bed, dumpLike(500));
    await bed.copies.sync();
    const read = () => readManifest({ objects: bed.objects, keyring: bed.keyring }, bed.copies.layout, bed.projectId);
    expect((await read()).database).toMatchObject({ state: "ready", sealedPassword: "v1.k.sealed" });

    await bed.store.updateDatabase(bed.projectId, { sealedPassword: "v1.k.rotated" });
    await bed.copies.sync();
    expect((await read()).database).toMatchObject({ state: "ready", sealedPassword: "v1.k.rotated" });

    await bed.store.updateDatabase(bed.projectId, { state: "deleted", sealedPassword: "" });
    await bed.copies.sync();
    expect((await read()).database).toMatchObject({ state: "deleted", sealedPassword: "" });
  });

  it("leaves the bucket alone when the state knows nothing: a fresh host pointed at it deletes nothing", async () => {
    await ready(bed);
    await bed.wal.write(bed.projectId, GENERATION, segment(1), randomBytes(1024));
    const kept = await backup(bed, dumpLike(1_000));
    await bed.copies.sync();
    const before = await s3.keys(bed.copies.layout.projectPrefix(bed.projectId));
    expect(before).toHaveLength(3);

    const fresh = newBed({ prefix: bed.copies.layout.prefix, keyring: bed.keyring });
    await fresh.copies.start();
    await fresh.copies.sync();
    expect(await s3.keys(bed.copies.layout.projectPrefix(bed.projectId))).toEqual(before);
    // And with only the master key it reads what is there.
    expect((await buffer(await fresh.copies.openBackup(kept))).length).toBe(1_000);
  });
});
