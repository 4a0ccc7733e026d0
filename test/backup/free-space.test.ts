// The free-space check against the real file system: statfs, the reserve in
// bytes or percent, and needs of two directories on one file system adding up.
import { mkdir, mkdtemp, rm, statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { findShortage } from "../../src/backup/free-space.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sota-free-space-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

async function available(): Promise<number> {
  const fs = await statfs(dir);
  return fs.bavail * fs.bsize;
}

describe("findShortage", () => {
  it("passes work that fits above the reserve, and names the file system of work that does not", async () => {
    expect(await findShortage([{ dir, bytes: 1024 }], { bytes: 0 })).toBeUndefined();
    expect(await findShortage([{ dir, bytes: 0 }], { percent: 0 })).toBeUndefined();
    const free = await available();
    const shortage = await findShortage([{ dir, bytes: 1024 }], { bytes: free * 2 });
    expect(shortage).toMatchObject({ dir, reserveBytes: free * 2, neededBytes: 1024 });
    expect(shortage!.availableBytes).toBeGreaterThan(0);
  });

  it("takes a percentage of the file system's size", async () => {
    const fs = await statfs(dir);
    const usedShare = 100 * (1 - (fs.bavail * fs.bsize) / (fs.blocks * fs.bsize));
    // A reserve of everything that is not used yet, and a bit: no room whatever the work.
    expect(await findShortage([{ dir, bytes: 0 }], { percent: Math.min(99.9, 100 - usedShare + 0.5) })).toBeDefined();
  });

  it("adds up the needs of directories on one file system", async () => {
    const other = join(dir, "scratch");
    await mkdir(other);
    const share = Math.floor((await available()) * 0.6);
    expect(await findShortage([{ dir, bytes: share }], { bytes: 0 })).toBeUndefined();
    expect(await findShortage([{ dir: other, bytes: share }], { bytes: 0 })).toBeUndefined();
    expect(await findShortage([{ dir, bytes: share }, { dir: other, bytes: share }], { bytes: 0 })).toMatchObject({ neededBytes: share * 2 });
  });
});
