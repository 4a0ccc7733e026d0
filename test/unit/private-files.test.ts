import { chmodSync, lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createPrivateFile, securePrivateFiles, securePrivateTree } from "../../src/store/private-files.js";

const dirs: string[] = [];
afterEach(() => {
  for (const path of dirs.splice(0)) rmSync(path, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "sota-modes-"));
  dirs.push(dir);
  return dir;
}

const mode = (path: string): number => lstatSync(path).mode & 0o777;

describe("private files", () => {
  it("makes a loose data dir 0711 and its files 0600, leaving symlinks and subdirectories alone", () => {
    const data = tempDir();
    const outside = tempDir();
    chmodSync(data, 0o755);
    writeFileSync(join(data, "state.db"), "", { mode: 0o644 });
    writeFileSync(join(data, "master.key"), "", { mode: 0o640 });
    writeFileSync(join(outside, "target"), "", { mode: 0o644 });
    symlinkSync(join(outside, "target"), join(data, "link"));
    mkdirSync(join(data, "instances"), { mode: 0o755 });
    securePrivateFiles(data);
    expect(mode(data)).toBe(0o711);
    expect(mode(join(data, "state.db"))).toBe(0o600);
    expect(mode(join(data, "master.key"))).toBe(0o600);
    expect(statSync(join(outside, "target")).mode & 0o777).toBe(0o644);
    expect(mode(join(data, "instances"))).toBe(0o755);
    // Tighter than required stays as it is.
    chmodSync(data, 0o700);
    securePrivateFiles(data);
    expect(mode(data)).toBe(0o700);
  });

  it("makes a backup tree 0700/0600, and creates a private file 0600 whatever the umask", () => {
    const backups = join(tempDir(), "backups");
    mkdirSync(join(backups, "p-1"), { recursive: true, mode: 0o755 });
    chmodSync(backups, 0o755);
    writeFileSync(join(backups, "p-1", "b.sql.gz"), "", { mode: 0o644 });
    securePrivateTree(backups);
    expect([mode(backups), mode(join(backups, "p-1")), mode(join(backups, "p-1", "b.sql.gz"))]).toEqual([0o700, 0o700, 0o600]);
    securePrivateTree(join(backups, "absent"));

    const file = join(tempDir(), "state.db");
    createPrivateFile(file);
    expect(mode(file)).toBe(0o600);
    chmodSync(file, 0o644);
    createPrivateFile(file);
    expect(mode(file)).toBe(0o600);
  });
});
