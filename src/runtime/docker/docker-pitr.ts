// The Docker driver's PointInTimeRecovery: the runtime's `pitr`. Each call
// first lets the project's WAL set-up (started by ensure, in the background)
// finish, so it sees the receiver ensure made; what changes a database
// (recover, pruneWal) runs under the project's lock like ensure and remove.
import type { Readable } from "node:stream";
import type {
  BaseBackupInfo,
  DatabaseSpec,
  PointInTimeRecovery,
  RecoveryTarget,
  RuntimeTarget,
  WalGeneration,
} from "../runtime.js";
import { failedStream } from "../shared/failed-stream.js";
import { takeBaseBackup } from "./base-backup.js";
import type { DockerEngine } from "./docker-engine.js";
import type { ProjectNames } from "./docker-names.js";
import { recoverProject, type Recovered, type RecoveryParts } from "./recovery-steps.js";
import { listArchive, pruneArchive, readArchived, type ArchivePlace } from "./wal-archive.js";
import { flushWal } from "./wal-flush.js";
import { inspectReceiver } from "./wal-receiver.js";

export interface PitrHost {
  readonly parts: RecoveryParts;
  /** The runtime is open and the target valid: the project's names. */
  openNames(target: RuntimeTarget): ProjectNames;
  /** Runs `work` under the project's lock. */
  locked<T>(slug: string, work: () => Promise<T>): Promise<T>;
  /** Resolves once the project's WAL set-up begun by ensure has ended (however it ended). */
  walSettled(slug: string): Promise<void>;
}

export class DockerPointInTimeRecovery implements PointInTimeRecovery {
  private readonly engine: DockerEngine;

  constructor(private readonly host: PitrHost) {
    this.engine = host.parts.engine;
  }

  baseBackup(target: RuntimeTarget): { readonly stream: Readable; readonly info: Promise<BaseBackupInfo> } {
    try {
      this.host.openNames(target);
    } catch (error) {
      const info = Promise.reject(error as Error);
      info.catch(() => undefined);
      return { stream: failedStream(error), info };
    }
    return takeBaseBackup(this.engine, target, this.host.walSettled(target.slug));
  }

  async walGenerations(target: RuntimeTarget): Promise<WalGeneration[]> {
    const names = this.host.openNames(target);
    await this.host.walSettled(target.slug);
    return listArchive(this.engine, target, names, await this.place(target, names));
  }

  async flushWal(target: RuntimeTarget): Promise<Date> {
    this.host.openNames(target);
    await this.host.walSettled(target.slug);
    return flushWal(this.engine, target);
  }

  readWal(target: RuntimeTarget, generation: string, name: string): Readable {
    let names: ProjectNames;
    try {
      names = this.host.openNames(target);
    } catch (error) {
      return failedStream(error);
    }
    const place = this.host.walSettled(target.slug).then(() => this.place(target, names));
    return readArchived(this.engine, target, names, place, generation, name);
  }

  async recover(spec: DatabaseSpec, base: Readable, recovery: RecoveryTarget, signal?: AbortSignal): Promise<Recovered> {
    this.host.openNames(spec);
    this.host.openNames(recovery.source);
    return this.host.locked(spec.slug, async () => {
      await Promise.all([this.host.walSettled(spec.slug), this.host.walSettled(recovery.source.slug)]);
      return recoverProject(this.host.parts, spec, base, recovery, signal);
    });
  }

  async pruneWal(target: RuntimeTarget, keep: ReadonlyMap<string, string>): Promise<void> {
    const names = this.host.openNames(target);
    await this.host.locked(target.slug, async () => {
      await this.host.walSettled(target.slug);
      await pruneArchive(this.engine, target, names, await this.place(target, names), keep);
    });
  }

  /** The running receiver, or the image a helper runs: the receiver's, PostgreSQL's, else the configured one. */
  private async place(target: RuntimeTarget, names: ProjectNames): Promise<ArchivePlace> {
    const receiver = await inspectReceiver(this.engine, target, names);
    if (receiver) return { receiver, image: receiver.Image };
    const postgres = await this.engine.inspectContainer(names.postgres);
    if (postgres) return { receiver: undefined, image: postgres.Image };
    const image = this.host.parts.settings.postgresImage;
    const info = await this.engine.call(`inspecting image ${image}`, () => this.engine.docker.getImage(image).inspect());
    return { receiver: undefined, image: info.Id };
  }
}
