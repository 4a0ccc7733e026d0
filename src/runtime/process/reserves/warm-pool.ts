// The optional warm pool (SOTA_WARM_POOL): copies of the template cluster with
// PostgreSQL already started and given to nobody yet. Copying and starting are
// most of the time a new database takes; with a warm instance at hand, ensure
// is left with a directory rename, the role and database renames, credentials
// and PgBouncer. Warm instances live in {dataDir}/warm/{id} with an instance's
// layout, so renaming the directory to instances/{slug} makes one a project's,
// its OS user (made with it, see instance-users.ts) included.
import { randomBytes } from "node:crypto";
import { lstat, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { loggableError, type Logger } from "../../../log.js";
import { instanceLayout, socketDirInside, type InstancePaths } from "../instance/instance-paths.js";
import { isReusableCopy, settleLayout } from "../instance/instance-layout.js";
import type { InstanceUsers } from "../host/instance-users.js";
import type { RunAs } from "../host/os-user.js";
import { ensureDir, removeTree, SERVICE_ONLY, syncDir } from "../host/owned-files.js";
import { pathExists } from "../host/path-checks.js";
import { RefillLoop } from "./refill-loop.js";
import type { PostgresBinaries } from "../host/postgres-binaries.js";
import { PostgresServer } from "../children/postgres-server.js";
import { stopStalePostmaster } from "../children/stale-process.js";
import { copyTemplate, syncFileSystem } from "./template-cluster.js";

export interface WarmInstance {
  readonly id: string;
  readonly paths: InstancePaths;
  readonly runAs: RunAs;
  readonly postgres: PostgresServer;
}

/** What callers outside the driver (tests, the benchmark) may see of the pool. */
export interface WarmPoolState {
  /** How many warm instances the pool keeps (0: no pool). */
  readonly size: number;
  /** How many are started and unassigned right now. */
  readonly ready: number;
  /** Resolves once `ready` has reached `size`. */
  whenFull(signal?: AbortSignal): Promise<void>;
}

export interface WarmPoolOptions {
  readonly size: number;
  /** {dataDir}/warm, the service's. */
  readonly root: string;
  readonly binaries: PostgresBinaries;
  readonly users: InstanceUsers;
  readonly logger: Logger;
  /** The template cluster's path (built on first use). */
  readonly template: () => Promise<string>;
  /** Bound on one warm PostgreSQL's start. */
  readonly startTimeoutMs: number;
}

const ENTRY = /^w-[0-9a-f]{12}$/;
const BUILDING_PREFIX = "tmp-";

export class WarmPool implements WarmPoolState {
  readonly size: number;
  private readonly instances: WarmInstance[] = [];
  /** Unsubscribes the pool's exit watch of a ready instance. */
  private readonly unwatch = new Map<WarmInstance, () => void>();
  private readonly closing = new AbortController();
  private readonly refill: RefillLoop;
  /** Complete copies a previous run left, started again before new ones are made. */
  private reusable: string[] = [];

  constructor(private readonly options: WarmPoolOptions) {
    const probe = instanceLayout(join(options.root, "w-000000000000"));
    const socketInside = socketDirInside(probe);
    if (options.size > 0 && !socketInside) {
      options.logger.warn({ dir: options.root }, "warm pool disabled: the data dir's path is too long for unix sockets inside it");
    }
    this.size = socketInside ? options.size : 0;
    this.refill = new RefillLoop({
      signal: this.closing.signal,
      wanted: () => this.instances.length < this.size,
      makeOne: () => {
        const reused = this.reusable.shift();
        return reused ? this.start(reused) : this.create();
      },
      logger: options.logger,
      failure: "warm pool: starting a warm instance failed",
    });
  }

  get ready(): number {
    return this.instances.length;
  }

  /**
   * Brings the pool to its size in the background. Cheap when there is
   * nothing to do, so callers may call it after every ensure.
   */
  fill(): void {
    this.refill.start();
  }

  /** A started, unassigned instance, or undefined when none is ready. The pool forgets it. */
  take(): WarmInstance | undefined {
    for (let instance = this.instances.shift(); instance; instance = this.instances.shift()) {
      this.forget(instance);
      if (instance.postgres.running) return instance;
      this.discard(instance);
    }
    return undefined;
  }

  /** Stops and deletes a taken instance that could not be used. */
  discard(instance: WarmInstance): void {
    this.refill.discard(this.remove(instance), { warm: instance.id }, "removing a warm instance failed");
  }

  whenFull(signal?: AbortSignal): Promise<void> {
    return this.refill.whenDone(signal);
  }

  /** Stops the warm instances and keeps their directories for the next start. */
  async close(): Promise<void> {
    this.closing.abort();
    await this.refill.settled();
    const instances = this.instances.splice(0);
    await Promise.all(
      instances.map((instance) => {
        this.forget(instance);
        return instance.postgres.stop();
      }),
    );
  }

  /**
   * Runs once, before the runtime starts any instance. A killed run may have
   * left warm postmasters running, copies half made, and symlinks at the old
   * paths of warm instances it gave to projects, whose postmasters may still
   * run through them: those are stopped cleanly while the symlink still
   * stands (their shutdown checkpoint goes through it), then it is removed.
   * Complete copies of this PostgreSQL major are kept for fill() to start
   * again, up to the pool's size; everything else goes.
   */
  async cleanUp(): Promise<void> {
    const { root, logger, binaries } = this.options;
    for (const name of (await readdir(root)).sort()) {
      const paths = instanceLayout(join(root, name));
      try {
        await stopStalePostmaster(paths.pgdata, logger);
        if ((await lstat(paths.dir)).isSymbolicLink()) {
          await rm(paths.dir, { force: true });
          continue;
        }
        const keep = ENTRY.test(name) && this.reusable.length < this.size && (await isReusableCopy(paths, this.options.users, binaries.major));
        if (keep) this.reusable.push(name);
        else await this.removeDir(paths.dir);
      } catch (error) {
        logger.warn({ entry: name, err: loggableError(error) }, "warm pool: cleaning up an entry of the last run failed");
      }
    }
  }

  private async create(): Promise<void> {
    const { root, users } = this.options;
    const template = await this.options.template();
    const id = `w-${randomBytes(6).toString("hex")}`;
    // Built under another name: recover() only reuses complete copies.
    const building = join(root, `${BUILDING_PREFIX}${id}`);
    try {
      await ensureDir(building, { ...SERVICE_ONLY, mode: 0o700 });
      const runAs = await users.assign(building);
      const paths = instanceLayout(building);
      await copyTemplate(template, paths.pgdata, runAs);
      await settleLayout(paths, runAs);
      // On disk before it is complete by name: a project may get it any moment.
      await syncFileSystem(building);
      await rename(building, join(root, id));
      await syncDir(root);
    } catch (error) {
      await this.removeDir(building);
      throw error;
    }
    await this.start(id);
  }

  private async start(id: string): Promise<void> {
    const started = Date.now();
    const paths = instanceLayout(join(this.options.root, id));
    const runAs = await this.options.users.recorded(paths.dir);
    if (runAs === undefined) throw new Error(`the OS user of warm instance ${id} is gone`);
    const postgres = new PostgresServer({
      name: `warm instance ${id}`,
      binaries: this.options.binaries,
      runAs,
      pgdata: paths.pgdata,
      configFile: paths.postgresConf,
      hbaFile: paths.hbaConf,
      socketDir: paths.socketDir,
      socketDirShared: false,
      logFile: paths.postgresLog,
      logger: this.options.logger.child({ warm: id }),
    });
    const instance: WarmInstance = { id, paths, runAs, postgres };
    try {
      await postgres.start();
      const client = await postgres.connect("postgres", Date.now() + this.options.startTimeoutMs, this.closing.signal);
      await client.end().catch(() => undefined);
    } catch (error) {
      // Closing: stopped, and kept for the next start. Otherwise it is broken.
      if (this.closing.signal.aborted) await postgres.stop();
      else await this.remove(instance);
      throw error;
    }
    this.unwatch.set(
      instance,
      postgres.process.onExit(() => {
        const index = this.instances.indexOf(instance);
        if (index < 0) return;
        this.instances.splice(index, 1);
        this.forget(instance);
        this.options.logger.warn({ warm: id }, "warm pool: a warm PostgreSQL exited; replacing it");
        this.discard(instance);
        this.fill();
      }),
    );
    this.instances.push(instance);
    this.options.logger.debug({ warm: id, ms: Date.now() - started }, "warm instance ready");
  }

  private forget(instance: WarmInstance): void {
    this.unwatch.get(instance)?.();
    this.unwatch.delete(instance);
  }

  private async remove(instance: WarmInstance): Promise<void> {
    await instance.postgres.stop();
    await this.removeDir(instance.paths.dir);
  }

  /** Its OS user's processes ended and the user deleted first: none can race the removal. */
  private async removeDir(dir: string): Promise<void> {
    await this.options.users.release(dir);
    await removeTree(dir);
  }
}
