import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DataDirInUseError, LOCK_FILE, lockDataDir } from "../../src/store/data-dir-lock.js";

const dirs: string[] = [];
afterEach(() => {
  for (const path of dirs.splice(0)) rmSync(path, { recursive: true, force: true });
});

describe("lockDataDir", () => {
  it("holds the data dir until released, refusing a second holder at once, also in the same process", () => {
    const dir = mkdtempSync(join(tmpdir(), "sota-lock-"));
    dirs.push(dir);
    const first = lockDataDir(dir);
    expect(statSync(join(dir, LOCK_FILE)).mode & 0o777).toBe(0o600);
    expect(() => lockDataDir(dir)).toThrow(DataDirInUseError);
    // A refused attempt does not loosen the holder's lock.
    expect(() => lockDataDir(dir)).toThrow(`data dir ${dir} is in use by another sota-db`);
    first.release();
    const second = lockDataDir(dir);
    second.release();
  });
});
