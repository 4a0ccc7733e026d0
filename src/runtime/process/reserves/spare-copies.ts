// Spare copies (SOTA_SPARE_COPIES, default 1): copies of the template cluster
// made and flushed ahead of time, in the background, and never started. The
// copy and its flush are most of what a new database costs on a slow disk;
// with a spare at hand, ensure renames it into the project's directory and
// starts PostgreSQL on it. A spare costs disk (the template's size, ~40 MB)
// and no memory, unlike a warm instance (warm-pool.ts), which runs.
//
// Each spare is an instance directory at {dataDir}/spares/s-{id} (the
// service's) holding a complete, flushed data directory and the record of the
// OS user made for it (see instance-users.ts), so a new database gets its own
// user without waiting for useradd. It is built under tmp-{id} and renamed
// when it is on disk, so a name of that form always means a whole copy.
import { randomBytes } from "node:crypto";
import { readdir, rename } from "node:fs/promises";
import { join } from "node:path";
import { loggableError, type Logger } from "../../../log.js";
import { instanceLayout } from "../instance/instance-paths.js";
import type { InstanceUsers } from "../host/instance-users.js";
import { isReusableCopy } from "../instance/instance-layout.js";
import { ensureDir, removeTree, SERVICE_ONLY, syncDir } from "../host/owned-files.js";
import { RefillLoop } from "./refill-loop.js";
import { copyTemplate, syncFileSystem } from "./template-cluster.js";

export interface SpareCopiesOptions {
  readonly size: number;
  /** {dataDir}/spares, the service's. */
  readonly root: string;
  /** The host's PostgreSQL major: spares of another one are removed. */
  readonly major: number;
  readonly users: InstanceUsers;
  readonly logger: Logger;
  /** The template cluster's path (built on first use). */
  readonly template: () => Promise<string>;
}

/** What callers outside the driver (tests, the benchmark) may see of the spares. */
export interface SpareCopiesState {
  /** How many spares are kept (0: none). */
  readonly size: number;
  /** How many are on disk and unclaimed right now. */
  readonly ready: number;
  /** Resolves once `ready` has reached `size`. */
  whenFull(signal?: AbortSignal): Promise<void>;
}

const ENTRY = /^s-[0-9a-f]{12}$/;
const BUILDING_PREFIX = "tmp-";

export class SpareCopies implements SpareCopiesState {
  /** Paths of complete, unclaimed spares, oldest first. */
  private readonly spares: string[] = [];
  private readonly closing = new AbortController();
  private readonly refill: RefillLoop;

  constructor(private readonly options: SpareCopiesOptions) {
    this.refill = new RefillLoop({
      signal: this.closing.signal,
      wanted: () => this.spares.length < this.size,
      makeOne: () => this.create(),
      logger: options.logger,
      failure: "spare copies: making a spare copy failed",
    });
  }

  get size(): number {
    return this.options.size;
  }

  get ready(): number {
    return this.spares.length;
  }

  /**
   * Runs once, before any ensure: keeps the complete spares of this
   * PostgreSQL major an earlier run left, up to the size, and removes
   * everything else (half-built copies, other majors, extras, one claimed by
   * a project in a crash before it moved, an earlier release's).
   */
  async cleanUp(): Promise<void> {
    const { root, logger } = this.options;
    for (const name of (await readdir(root)).sort()) {
      const path = join(root, name);
      try {
        if (ENTRY.test(name) && this.spares.length < this.size && (await isReusableCopy(instanceLayout(path), this.options.users, this.options.major))) this.spares.push(path);
        else await this.remove(path);
      } catch (error) {
        logger.warn({ entry: name, err: loggableError(error) }, "spare copies: cleaning up an entry of the last run failed");
      }
    }
  }

  /** Brings the spares to their size in the background; cheap when there is nothing to do. */
  fill(): void {
    this.refill.start();
  }

  /**
   * A spare's path, which the caller renames into place (same file system);
   * undefined when none is ready. The spares forget it.
   */
  take(): string | undefined {
    return this.spares.shift();
  }

  /** Deletes, in the background, a taken spare that could not be used, and its OS user. */
  discard(path: string): void {
    this.refill.discard(this.remove(path), { spare: path }, "spare copies: removing a spare failed");
  }

  whenFull(signal?: AbortSignal): Promise<void> {
    return this.refill.whenDone(signal);
  }

  /** Waits for a copy in progress; the spares stay on disk for the next start. */
  async close(): Promise<void> {
    this.closing.abort();
    await this.refill.settled();
  }

  private async create(): Promise<void> {
    const { root, users } = this.options;
    const started = Date.now();
    const template = await this.options.template();
    const id = randomBytes(6).toString("hex");
    const building = join(root, `${BUILDING_PREFIX}${id}`);
    const spare = join(root, `s-${id}`);
    try {
      await ensureDir(building, { ...SERVICE_ONLY, mode: 0o700 });
      const runAs = await users.assign(building);
      await copyTemplate(template, instanceLayout(building).pgdata, runAs);
      // On disk before it is complete by name: an ensure may take it any moment.
      await syncFileSystem(building);
      await rename(building, spare);
      await syncDir(root);
    } catch (error) {
      await this.remove(building);
      throw error;
    }
    this.spares.push(spare);
    this.options.logger.debug({ spare: id, ms: Date.now() - started }, "spare copy ready");
  }

  /** A spare never ran: its user has no process to race the removal. */
  private async remove(path: string): Promise<void> {
    await this.options.users.release(path);
    await removeTree(path);
  }
}
