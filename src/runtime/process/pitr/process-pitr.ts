// The process driver's point-in-time recovery (Runtime.pitr): each
// database's WAL archive beside its data directory, filled by its WAL
// receiver; base backups; recoveries; pruning. What changes an instance
// (recover, pruneWal) runs under the project's lock, like ensure and remove.
import { PassThrough, pipeline, type Readable } from "node:stream";
import { RuntimeError, type BaseBackupInfo, type DatabaseSpec, type EnsureResult, type PointInTimeRecovery, type RecoveryTarget, type RuntimeTarget, type WalGeneration } from "../../runtime.js";
import type { KeyedLock } from "../../keyed-lock.js";
import type { RuntimeClosing } from "../../shared/runtime-closing.js";
import { failedStream } from "../../shared/failed-stream.js";
import { checkTarget } from "../../shared/target-checks.js";
import { SEGMENT_NAME } from "../../shared/wal-names.js";
import type { DriverParts } from "../driver-parts.js";
import type { Instance } from "../instance/project-instance.js";
import { superuserClient } from "../sql/pg-clients.js";
import { baseBackupStream } from "./base-backup.js";
import { flushWal } from "./flush-wal.js";
import { recoverDatabase } from "./recovery.js";
import { receiverStreaming } from "./replication-slot.js";
import { findArchive } from "./archive-lookup.js";
import { checkGenerationId, type WalArchive } from "./wal-archive.js";

export interface ProcessPitrDeps {
  readonly parts: DriverParts;
  readonly locks: KeyedLock;
  readonly closing: RuntimeClosing;
  /** The target's running instance (checks the runtime is open and the target valid), else a RuntimeError. */
  readonly running: (target: RuntimeTarget) => Instance;
}

export class ProcessPitr implements PointInTimeRecovery {
  constructor(private readonly deps: ProcessPitrDeps) {}

  baseBackup(target: RuntimeTarget): { readonly stream: Readable; readonly info: Promise<BaseBackupInfo> } {
    try {
      const instance = this.deps.running(target);
      return baseBackupStream(instance, this.deps.parts.binaries.postgres.pgBasebackup);
    } catch (error) {
      const info = Promise.reject(error instanceof Error ? error : new Error(String(error)));
      info.catch(() => undefined);
      return { stream: failedStream(error), info };
    }
  }

  async walGenerations(target: RuntimeTarget): Promise<WalGeneration[]> {
    this.deps.closing.assertOpen();
    checkTarget(target);
    const archive = await this.archiveOf(target);
    if (archive === undefined) return [];
    const [ids, current] = await Promise.all([archive.generations(), archive.current()]);
    const streaming = current !== undefined && (await this.streaming(target));
    return Promise.all(
      ids.map(async (id): Promise<WalGeneration> => {
        const files = await archive.files(id);
        const newest = Math.max(0, ...files.map((file) => file.modifiedAt.getTime()));
        return {
          id,
          streaming: streaming && id === current,
          lastReceivedAt: files.length === 0 ? null : new Date(newest),
          bytes: files.reduce((sum, file) => sum + file.bytes, 0),
          segments: files.map((file) => ({ name: file.name, bytes: file.bytes, complete: file.complete })),
        };
      }),
    );
  }

  async flushWal(target: RuntimeTarget): Promise<Date> {
    return flushWal(this.deps.running(target));
  }

  readWal(target: RuntimeTarget, generation: string, name: string): Readable {
    const output = new PassThrough();
    const opened = (async () => {
      this.deps.closing.assertOpen();
      checkTarget(target);
      checkGenerationId(generation);
      const archive = await this.archiveOf(target);
      if (archive === undefined) throw new RuntimeError("failed", `database ${target.slug} has no WAL archive on this host`);
      return archive.open(generation, name);
    })();
    opened.then(
      (handle) => {
        if (output.destroyed) {
          void handle.close();
          return;
        }
        pipeline(handle.createReadStream(), output, () => undefined);
      },
      (error: unknown) => output.destroy(error instanceof Error ? error : new Error(String(error))),
    );
    return output;
  }

  async recover(spec: DatabaseSpec, base: Readable, recovery: RecoveryTarget, signal?: AbortSignal): Promise<{ readonly generation: string; readonly result: EnsureResult }> {
    const { parts, locks, closing } = this.deps;
    closing.assertOpen();
    return locks.run(spec.slug, () => {
      closing.assertOpen();
      return recoverDatabase(parts, spec, base, recovery, signal);
    });
  }

  async pruneWal(target: RuntimeTarget, keep: ReadonlyMap<string, string>): Promise<void> {
    const { locks, closing } = this.deps;
    closing.assertOpen();
    checkTarget(target);
    // Checked whole before anything is deleted.
    for (const [id, startSegment] of keep) {
      checkGenerationId(id);
      if (!SEGMENT_NAME.test(startSegment)) throw new RuntimeError("failed", `${JSON.stringify(startSegment.slice(0, 40))} is not a WAL segment name`);
    }
    await locks.run(target.slug, async () => {
      closing.assertOpen();
      const archive = await this.archiveOf(target);
      if (archive === undefined) return;
      // What a crash left half removed; here, under the lock, no removal is in flight.
      await archive.removeLeftovers();
      const current = await archive.current();
      for (const id of await archive.generations()) {
        const startSegment = keep.get(id);
        if (startSegment !== undefined) await archive.removeSegmentsBefore(id, startSegment);
        else if (id !== current) await archive.removeGeneration(id);
      }
    });
  }

  private archiveOf(target: RuntimeTarget): Promise<WalArchive | undefined> {
    return findArchive(this.deps.parts, target);
  }

  private async streaming(target: RuntimeTarget): Promise<boolean> {
    const instance = this.deps.parts.instances.get(target.slug);
    if (!instance || instance.projectId !== target.projectId || !instance.postgres.running || !instance.wal.running) return false;
    const client = superuserClient(instance.paths.socketDir, "postgres");
    try {
      await client.connect();
      return await receiverStreaming(client);
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}
