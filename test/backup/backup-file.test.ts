// Writing one backup file: content, checksum, durability and no leftovers on failure.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { fileChecksum, writeBackupFile } from "../../src/backup/backup-file.js";
import { backupFilePath, partialFilePath } from "../../src/backup/backup-paths.js";
import { newBackupId } from "../../src/names.js";
import { sqlText } from "../support/backup-fakes.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sota-backup-file-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function paths(slug = "shop") {
  const id = newBackupId(new Date());
  return { id, partialPath: partialFilePath(dir, slug, id), finalPath: backupFilePath(dir, slug, id) };
}

describe("writeBackupFile", () => {
  it("writes gzip of the dump under {slug}/{id}.sql.gz with the size and sha256 of the file", async () => {
    const sql = sqlText(5_000);
    const target = paths();
    const written = await writeBackupFile({ source: Readable.from([sql]), ...target });
    const bytes = await readFile(target.finalPath);
    expect(target.finalPath).toBe(join(dir, "shop", `${target.id}.sql.gz`));
    expect(gunzipSync(bytes).toString()).toBe(sql);
    expect(written.sizeBytes).toBe(bytes.length);
    expect(written.sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
    expect(await fileChecksum(target.finalPath)).toEqual(written);
    expect(await readdir(join(dir, "shop"))).toEqual([`${target.id}.sql.gz`]);
  });

  it("leaves no file behind when the dump breaks off half way", async () => {
    const target = paths();
    const source = new PassThrough();
    const writing = writeBackupFile({ source, ...target });
    source.write(randomBytes(256 * 1024));
    await new Promise((resolve) => setTimeout(resolve, 20));
    source.destroy(new Error("pg_dump exited with code 1"));
    await expect(writing).rejects.toThrow(/pg_dump exited/);
    expect(await readdir(join(dir, "shop"))).toEqual([]);
  });

  it("leaves no file behind when the disk fails, and destroys the dump so pg_dump ends", async () => {
    const target = paths();
    const source = new PassThrough();
    const failingDisk = () =>
      new (class extends PassThrough {
        override _write(_chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error) => void): void {
          callback(Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" }));
        }
      })();
    const writing = writeBackupFile({ source, ...target, openOutput: failingDisk });
    source.write(randomBytes(128 * 1024));
    await expect(writing).rejects.toMatchObject({ code: "ENOSPC" });
    expect(source.destroyed).toBe(true);
    expect(await readdir(join(dir, "shop"))).toEqual([]);
  });

  it("never overwrites an existing partial file", async () => {
    const target = paths();
    await writeBackupFile({ source: Readable.from(["x"]), ...target });
    await writeFile(target.partialPath, "someone else's");
    await expect(writeBackupFile({ source: Readable.from(["y"]), ...target })).rejects.toMatchObject({ code: "EEXIST" });
  });

  it("refuses paths built from a bad slug or backup id", () => {
    expect(() => backupFilePath(dir, "../etc", newBackupId(new Date()))).toThrow(/invalid slug/);
    expect(() => backupFilePath(dir, "shop", "../../etc/passwd")).toThrow(/invalid backup id/);
    expect(() => partialFilePath(dir, "shop", "20261126t031452123z-0123456789ab/x")).toThrow(/invalid backup id/);
  });
});
