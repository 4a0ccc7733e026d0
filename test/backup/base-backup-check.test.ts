// VerifyBackup of a base backup checks its file: the recorded checksum, gzip,
// a well-formed tar that holds what a recovery starts from. Archives here are
// made by the system's tar, as pg_basebackup's are plain ustar.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { verifyBaseBackupFile } from "../../src/backup/base-backup-check.js";
import { newBackupRecord, type BackupRecord } from "../../src/store/records.js";

const work = mkdtempSync(join(tmpdir(), "sota-base-check-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A tar of a directory holding `files`, as bytes. */
function tarOf(files: Record<string, string>, prefix = "."): Buffer {
  const dir = mkdtempSync(join(work, "tree-"));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return execFileSync("tar", ["--format=ustar", "-cf", "-", "-C", dir, ...(prefix === "." ? ["."] : Object.keys(files))]);
}

const SERVER = { PG_VERSION: "15\n", "global/pg_control": "x".repeat(8192), backup_label: "START WAL LOCATION: 0/2000028\n", "base/1/1259": "y".repeat(20_000) };

/** Writes the file and a succeeded record whose checksum is that of `recorded` (default: the file itself). */
function stored(bytes: Buffer, recorded: Buffer = bytes): { path: string; record: BackupRecord } {
  const path = join(mkdtempSync(join(work, "file-")), "b.base.tar.gz");
  writeFileSync(path, bytes);
  const record = {
    ...newBackupRecord({ id: "20261130t120000000z-0123456789ab", projectId: "6f1c2b7e-9a4d-4e2f-8c1b-3d5e7f9a1b2c", slug: "shop", kind: "scheduled", startedAt: new Date(), format: "base" }),
    state: "succeeded" as const,
    sizeBytes: recorded.length,
    sha256: createHash("sha256").update(recorded).digest("hex"),
  };
  return { path, record };
}

describe("verifying a base backup's file", () => {
  it("passes a gzip tar of a server's files, with or without ./ in the names", async () => {
    for (const prefix of [".", ""]) {
      const { path, record } = stored(gzipSync(tarOf(SERVER, prefix), { level: 1 }));
      expect(await verifyBaseBackupFile(path, record)).toEqual({ passed: true, error: null });
    }
  });

  it("fails a file whose bytes are not those recorded", async () => {
    const good = gzipSync(tarOf(SERVER));
    const changed = Buffer.from(good);
    changed[changed.length - 20] = changed[changed.length - 20]! ^ 0xff;
    const { path, record } = stored(changed, good);
    expect(await verifyBaseBackupFile(path, record)).toEqual({ passed: false, error: expect.stringMatching(/checksum mismatch/) });
  });

  it("fails an archive that is not a base backup, cut short, damaged, or not gzip", async () => {
    const { backup_label: _label, ...noLabel } = SERVER;
    const cases: Array<[Buffer, RegExp]> = [
      [gzipSync(tarOf(noLabel)), /not a PostgreSQL base backup: it lacks backup_label/],
      [gzipSync(tarOf(SERVER).subarray(0, 4096)), /cut short/],
      [gzipSync(Buffer.concat([Buffer.alloc(100, 0x41), tarOf(SERVER).subarray(100)])), /tar header's checksum does not match/],
      [Buffer.from("not gzip at all, just text"), /does not decompress/],
    ];
    for (const [bytes, reason] of cases) {
      const { path, record } = stored(bytes);
      expect(await verifyBaseBackupFile(path, record)).toEqual({ passed: false, error: expect.stringMatching(reason) });
    }
  });

  it("fails a missing file", async () => {
    const { path, record } = stored(gzipSync(tarOf(SERVER)));
    rmSync(path);
    expect(await verifyBaseBackupFile(path, record)).toEqual({ passed: false, error: "its file is missing from the backup directory" });
  });
});
