// Free space, checked before a backup, verification or restore starts: once
// a dump or a scratch copy has filled the disk, every tenant on it fails at
// once (PostgreSQL cannot write WAL). Each file system must keep its reserve
// free on top of what the work is estimated to need; needs of directories on
// one file system add up.
import { stat, statfs } from "node:fs/promises";

/** A share of the file system's size, or a number of bytes. */
export type FreeSpaceReserve = { readonly bytes: number } | { readonly percent: number };

export interface SpaceNeed {
  /** An existing directory the work writes under. */
  readonly dir: string;
  /** Estimated bytes the work writes there. */
  readonly bytes: number;
}

export interface SpaceShortage {
  readonly dir: string;
  readonly availableBytes: number;
  readonly reserveBytes: number;
  readonly neededBytes: number;
}

/** The first file system that would drop below its reserve, or undefined when all have room. */
export async function findShortage(needs: readonly SpaceNeed[], reserve: FreeSpaceReserve): Promise<SpaceShortage | undefined> {
  const byDevice = new Map<number, { dir: string; bytes: number }>();
  for (const need of needs) {
    const { dev } = await stat(need.dir);
    const seen = byDevice.get(dev);
    byDevice.set(dev, { dir: seen?.dir ?? need.dir, bytes: (seen?.bytes ?? 0) + Math.max(0, need.bytes) });
  }
  for (const { dir, bytes } of byDevice.values()) {
    const fs = await statfs(dir);
    // bavail, not bfree: blocks reserved for root do not count, the service may not be root.
    const availableBytes = fs.bavail * fs.bsize;
    const reserveBytes = "percent" in reserve ? Math.ceil((fs.blocks * fs.bsize * reserve.percent) / 100) : reserve.bytes;
    if (availableBytes < reserveBytes + bytes) return { dir, availableBytes, reserveBytes, neededBytes: bytes };
  }
  return undefined;
}
