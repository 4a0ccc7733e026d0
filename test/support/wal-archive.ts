// A WAL archive in a directory, laid out as pg_receivewal leaves one
// ({root}/{projectId}/{generation}/{segment}, the segment being written with
// ".partial"), behind the two PointInTimeRecovery calls the off-host copier
// uses. A stand-in while the drivers' own archives are built: the files are
// real, only how they got there differs. The rest of the port is not needed
// by the copier and throws.
import { createReadStream, existsSync } from "node:fs";
import { mkdir, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { PointInTimeRecovery, Runtime, RuntimeTarget, WalGeneration } from "../../src/runtime/runtime.js";

export const SEGMENT_BYTES = 16 * 1024 * 1024;

export class DirectoryWalArchive implements PointInTimeRecovery {
  constructor(readonly root: string) {}

  /** A runtime that has only what the copier asks of one. */
  runtime(kind = "process"): Pick<Runtime, "kind" | "pitr"> {
    return { kind, pitr: this };
  }

  async write(projectId: string, generation: string, file: string, bytes: Buffer): Promise<void> {
    await mkdir(join(this.root, projectId, generation), { recursive: true });
    await writeFile(join(this.root, projectId, generation, file), bytes);
  }

  async walGenerations(target: RuntimeTarget): Promise<WalGeneration[]> {
    const dir = join(this.root, target.projectId);
    if (!existsSync(dir)) return [];
    const ids = (await readdir(dir)).sort();
    return Promise.all(
      ids.map(async (id, index) => {
        const files = (await readdir(join(dir, id))).sort();
        const stats = await Promise.all(files.map((file) => stat(join(dir, id, file))));
        const newest = Math.max(0, ...stats.map((entry) => entry.mtimeMs));
        return {
          id,
          streaming: index === ids.length - 1,
          lastReceivedAt: newest > 0 ? new Date(newest) : null,
          bytes: stats.reduce((sum, entry) => sum + entry.size, 0),
          segments: files.map((file, at) => ({ name: file.replace(/\.partial$/, ""), bytes: stats[at]!.size, complete: !file.endsWith(".partial") })),
        };
      }),
    );
  }

  readWal(target: RuntimeTarget, generation: string, name: string): Readable {
    const path = join(this.root, target.projectId, generation, name);
    return createReadStream(existsSync(path) ? path : `${path}.partial`);
  }

  baseBackup(): never {
    throw new Error("not part of the WAL archive stand-in");
  }
  flushWal(): never {
    throw new Error("not part of the WAL archive stand-in");
  }
  recover(): never {
    throw new Error("not part of the WAL archive stand-in");
  }
  pruneWal(): never {
    throw new Error("not part of the WAL archive stand-in");
  }
}
