// The process driver: each project's PostgreSQL and PgBouncer run as
// supervised child processes of the service, from the host's installation.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { mkdir, rename, rm, symlink } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import type { Logger } from "../../log.js";
import type { PortRange, PortRegistry } from "../port-registry.js";
import {
  RuntimeError,
  type DatabaseSpec,
  type Endpoint,
  type EnsureResult,
  type RemoveOptions,
  type Runtime,
  type RuntimeStatus,
  type RuntimeTarget,
} from "../runtime.js";
import { appRoleName, ensureAppDatabase } from "./app-database.js";
import { prepareDataDir, type PreparedDataDir } from "./data-dir.js";
import { instancePaths, instancesRoot, type InstancePaths } from "./instance-paths.js";
import { KeyedLock } from "../keyed-lock.js";
import { assertUserCanWrite, resolveRunAs, type RunAs } from "./os-user.js";
import { ensureOwnedDir, readIfExists, syncDir, writeOwnedFile } from "./owned-files.js";
import { queryOnce, superuserClient, type Rows } from "./pg-clients.js";
import { PgbouncerServer } from "./pgbouncer-server.js";
import { poolerSecrets, saveAdminPassword, writePoolerFiles, type PoolerAdmin } from "./pooler-setup.js";
import { isExecutable, pathExists } from "./path-checks.js";
import { listeningPorts } from "./port-probe.js";
import { discoverBinaries, type Binaries } from "./postgres-binaries.js";
import { PostgresServer, type PostgresServerOptions } from "./postgres-server.js";
import { dumpStream, restoreFromStream } from "./sql-tools.js";
import { stopStalePgbouncer, stopStalePostmaster } from "./stale-process.js";
import { ensureTemplateCluster } from "./template-cluster.js";
import { WarmPool, type WarmPoolState } from "./warm-pool.js";

export interface ProcessRuntimeOptions {
  /** Root of instances/ and templates/ (SOTA_DATA_DIR). */
  readonly dataDir: string;
  /** PostgreSQL bin directory (SOTA_PG_BIN_DIR); default: the highest major under /usr/lib/postgresql. */
  readonly pgBinDir?: string | undefined;
  /** pgbouncer executable (SOTA_PGBOUNCER_BIN); default: PATH, then /usr/sbin/pgbouncer. */
  readonly pgbouncerBin?: string | undefined;
  /** Loopback ports poolers are given from (SOTA_POOLER_PORTS). */
  readonly portRange: PortRange;
  /** Durable project → port allocations, so a database keeps its URL across restarts. */
  readonly ports: PortRegistry;
  /** OS user for postgres and pgbouncer when the service runs as root (default "postgres"). */
  readonly runAsUser?: string | undefined;
  /** Bound on how long ensure waits for PostgreSQL and for a query through PgBouncer. */
  readonly readyTimeoutMs: number;
  /**
   * Started, unassigned instances kept ready for new databases (SOTA_WARM_POOL;
   * default 0, none). Each costs one idle PostgreSQL's memory.
   */
  readonly warmPool?: number | undefined;
  readonly logger: Logger;
}

const SLUG = /^[a-z](?:[a-z0-9]|-(?!-))*$/;
const MAX_SLUG_LENGTH = 40;
const PROJECT_ID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
/** SCRAM needs SASLprep for anything else; the service's passwords are hex anyway. */
const PASSWORD = /^[\x21-\x7e]{1,1024}$/;
const LOOPBACK = "127.0.0.1";

/** A warm instance moved to a project's directory. */
interface ClaimedWarmInstance {
  readonly postgres: PostgresServer;
  /** The symlink left at its old path for its running postmaster (see PostgresServer.relocate). */
  readonly alias: string;
}

interface PreparedDir extends PreparedDataDir {
  /** The warm instance it came from, PostgreSQL running in it already. */
  readonly warm?: ClaimedWarmInstance;
}

interface Instance {
  readonly slug: string;
  readonly projectId: string;
  readonly paths: InstancePaths;
  readonly logger: Logger;
  readonly postgres: PostgresServer;
  readonly pgbouncer: PgbouncerServer;
  /** PgBouncer's console credentials, once set up. */
  admin: PoolerAdmin | undefined;
  /** Both processes answered a real query since their last unexpected exit. */
  healthy: boolean;
  /** HMAC of the password last verified end to end: the fast path compares without keeping the password. */
  passwordDigest: Buffer | undefined;
  result: EnsureResult | undefined;
  /** Symlink at the old path of a warm instance's postmaster, until that process exits. */
  alias: string | undefined;
}

/**
 * Finds the binaries and the run-as user and prepares the data dir; fails with
 * one clear line (a RuntimeError "unavailable") when the host cannot run it.
 */
export async function createProcessRuntime(options: ProcessRuntimeOptions): Promise<ProcessRuntime> {
  const binaries = await discoverBinaries(options);
  const runAs = await resolveRunAs(options.runAsUser);
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true });
  const dirs = [instancesRoot(dataDir), templatesRoot(dataDir), warmRoot(dataDir)];
  for (const dir of dirs) await ensureOwnedDir(dir, runAs, 0o700);
  await assertUserCanWrite(runAs, dataDir, dirs);
  const runtime = new ProcessRuntime({ ...options, dataDir }, binaries, runAs);
  await runtime.openWarmPool();
  return runtime;
}

export class ProcessRuntime implements Runtime {
  readonly kind = "process";
  private readonly instances = new Map<string, Instance>();
  private readonly locks = new KeyedLock();
  private readonly closing = new AbortController();
  private readonly digestKey = randomBytes(32);
  private readonly logger: Logger;
  private readonly pool: WarmPool;
  private template: Promise<string> | undefined;
  private closed: Promise<void> | undefined;

  /** Prefer createProcessRuntime, which checks the host first. */
  constructor(
    private readonly options: ProcessRuntimeOptions,
    readonly binaries: Binaries,
    readonly runAs: RunAs,
  ) {
    this.logger = options.logger;
    this.pool = new WarmPool({
      size: options.warmPool ?? 0,
      root: warmRoot(options.dataDir),
      binaries: binaries.postgres,
      runAs,
      logger: options.logger,
      template: () => this.ensureTemplate(),
      startTimeoutMs: Math.max(options.readyTimeoutMs, 30_000),
    });
  }

  get warmPool(): WarmPoolState {
    return this.pool;
  }

  /**
   * Cleans up what an earlier run left in the warm pool's directory (also when
   * the pool is off), then starts filling it in the background. Before any
   * ensure: the clean-up stops postmasters that ensure would otherwise find.
   */
  async openWarmPool(): Promise<void> {
    await this.pool.cleanUp();
    this.fillWarmPool();
  }

  /** Starts bringing the warm pool to its size, in the background. */
  fillWarmPool(): void {
    if (!this.closing.signal.aborted) this.pool.fill();
  }

  async ensure(spec: DatabaseSpec, signal?: AbortSignal): Promise<EnsureResult> {
    this.assertOpen();
    checkTarget(spec);
    if (!PASSWORD.test(spec.password)) {
      throw new RuntimeError("failed", "the database password must be 1 to 1024 printable ASCII characters without spaces");
    }
    // A warm instance taken by this ensure is replaced once it is done, so the
    // copy does not compete with it for the CPU.
    return this.locks.run(spec.slug, () => this.ensureLocked(spec, signal)).finally(() => this.fillWarmPool());
  }

  async status(target: RuntimeTarget): Promise<RuntimeStatus> {
    checkTarget(target);
    const instance = this.instances.get(target.slug);
    if (instance && instance.projectId === target.projectId && instance.postgres.running && instance.pgbouncer.running) {
      return { state: "running", endpoint: endpointFor(instance.pgbouncer.port) };
    }
    const marker = await readIfExists(instancePaths(this.options.dataDir, target.slug).projectMarker);
    return { state: marker?.trim() === target.projectId ? "stopped" : "missing" };
  }

  dump(target: RuntimeTarget): Readable {
    try {
      this.assertOpen();
      checkTarget(target);
      const instance = this.runningInstance(target);
      return dumpStream(this.binaries.postgres.pgDump, instance.paths.socketDir, target.slug);
    } catch (error) {
      return failedStream(error);
    }
  }

  async restore(target: RuntimeTarget, sql: Readable, database?: string): Promise<void> {
    this.assertOpen();
    checkTarget(target);
    const instance = this.runningInstance(target);
    await restoreFromStream(this.binaries.postgres.psql, instance.paths.socketDir, database ?? target.slug, sql);
  }

  async adminQuery(target: RuntimeTarget, sql: string, database = "postgres"): Promise<Rows> {
    this.assertOpen();
    checkTarget(target);
    const instance = this.runningInstance(target);
    return queryOnce(superuserClient(instance.paths.socketDir, database), sql);
  }

  async poolerCommand(target: RuntimeTarget, command: string): Promise<Rows> {
    this.assertOpen();
    checkTarget(target);
    const instance = this.runningInstance(target);
    if (!instance.pgbouncer.running || instance.admin === undefined) {
      throw new RuntimeError("unavailable", `the pooler of ${target.slug} is not running; ensure it first`);
    }
    return instance.pgbouncer.console(instance.admin.password, command);
  }

  async remove(target: RuntimeTarget, options: RemoveOptions): Promise<void> {
    this.assertOpen();
    checkTarget(target);
    await this.locks.run(target.slug, async () => {
      const paths = instancePaths(this.options.dataDir, target.slug);
      const marker = (await readIfExists(paths.projectMarker))?.trim();
      if (marker !== undefined && marker !== target.projectId) throw slugTaken(target.slug);
      const instance = this.instances.get(target.slug);
      if (instance) {
        await stopInstance(instance);
        this.instances.delete(target.slug);
      } else if (marker !== undefined) {
        await stopStalePgbouncer(paths.pgbouncerPid, paths.pgbouncerIni, this.logger);
        await stopStalePostmaster(paths.pgdata, this.logger);
      }
      this.options.ports.release(target.projectId);
      if (!options.keepData) {
        await rm(paths.dir, { recursive: true, force: true });
        if (!isInside(paths.socketDir, paths.dir)) await rm(paths.socketDir, { recursive: true, force: true });
      }
      this.logger.info({ slug: target.slug, projectId: target.projectId, keepData: options.keepData }, "database removed");
    });
  }

  async ping(): Promise<void> {
    this.assertOpen();
    const { postgres, pgbouncer } = this.binaries;
    for (const path of [postgres.postgres, postgres.initdb, postgres.pgDump, postgres.psql]) {
      if (!(await isExecutable(path))) {
        throw new RuntimeError(
          "unavailable",
          `PostgreSQL program ${path} is missing: reinstall the postgresql package (apt-get install postgresql) or set SOTA_PG_BIN_DIR`,
        );
      }
    }
    if (!(await isExecutable(pgbouncer.path))) {
      throw new RuntimeError(
        "unavailable",
        `PgBouncer ${pgbouncer.path} is missing: reinstall the pgbouncer package (apt-get install pgbouncer) or set SOTA_PGBOUNCER_BIN`,
      );
    }
  }

  close(): Promise<void> {
    this.closed ??= this.shutDown();
    return this.closed;
  }

  private async shutDown(): Promise<void> {
    this.closing.abort(new RuntimeError("unavailable", "the process runtime is shutting down"));
    await this.locks.settled();
    await Promise.all([this.pool.close(), ...[...this.instances.values()].map((instance) => stopInstance(instance))]);
    this.instances.clear();
    this.logger.info("process runtime stopped");
  }

  private async ensureLocked(spec: DatabaseSpec, callerSignal: AbortSignal | undefined): Promise<EnsureResult> {
    this.assertOpen();
    callerSignal?.throwIfAborted();
    const existing = this.instances.get(spec.slug);
    if (existing && existing.projectId !== spec.projectId) throw slugTaken(spec.slug);
    if (existing?.result && this.isHealthy(existing, spec.password)) return existing.result;

    const signal = callerSignal ? AbortSignal.any([this.closing.signal, callerSignal]) : this.closing.signal;

    const started = Date.now();
    const template = await this.ensureTemplate();
    const deadline = Date.now() + this.options.readyTimeoutMs;
    const paths = instancePaths(this.options.dataDir, spec.slug);
    const appRole = appRoleName(spec.slug);
    // Worked out while the directory is prepared (see pooler-setup.ts).
    const secrets = poolerSecrets(paths, appRole, spec.password, existing?.admin);
    secrets.catch(() => undefined);
    const { created, warm, flushed } = await this.prepareInstanceDir(spec, paths, template);
    let port: number;
    try {
      signal.throwIfAborted();
      port = this.allocatePort(spec.projectId);
    } catch (error) {
      // Not yet an instance that close() would stop.
      if (warm) await stopPostgres(warm.postgres, warm.alias);
      throw error;
    }
    const instance = existing ?? this.createInstance(spec, paths, port, warm);
    this.instances.set(spec.slug, instance);
    instance.healthy = false;
    if (instance.pgbouncer.port !== port) {
      await instance.pgbouncer.stop();
      instance.pgbouncer.port = port;
    }

    const { admin, adminSaved, appVerifier } = await secrets;
    instance.admin = admin;
    // PostgreSQL and PgBouncer come up side by side, while a new copy is still
    // being flushed: PgBouncer only connects to the server once a client
    // arrives, and the role gets the very verifier PgBouncer is given (SCRAM
    // pass-through needs the same salt on both).
    const [verifier] = await settleAll(
      this.startDatabase(instance, spec, appVerifier, deadline, signal),
      this.startPooler(instance, appVerifier, adminSaved),
      // A copy that cannot be flushed must not serve: stopped, it is copied again next time.
      (flushed ?? Promise.resolve()).catch(async (error: unknown) => {
        await stopInstance(instance);
        throw error;
      }),
    );
    // The role kept an older verifier of the same password: PgBouncer must have that one.
    if (verifier !== appVerifier) await this.startPooler(instance, verifier);
    const [postgresVersion, pooler] = await settleAll(
      instance.pgbouncer.waitForAppQuery(appRole, spec.password, spec.slug, deadline, signal),
      instance.pgbouncer.poolerInfo(admin.password, deadline, signal),
    );
    instance.pgbouncer.process.supervise();

    const result: EnsureResult = { endpoint: endpointFor(port), postgresVersion, pooler };
    instance.result = result;
    instance.passwordDigest = this.digest(spec.password);
    instance.healthy = true;
    instance.logger.info({ projectId: spec.projectId, port, created, warm: warm !== undefined, ms: Date.now() - started }, "database ready");
    return result;
  }

  /** PostgreSQL running, and the app role and database as `spec` wants them; returns the role's verifier. */
  private async startDatabase(instance: Instance, spec: DatabaseSpec, verifier: string, deadline: number, signal: AbortSignal): Promise<string> {
    if (!instance.postgres.running && !instance.postgres.process.supervising) await instance.postgres.start();
    const admin = await instance.postgres.connect("postgres", deadline, signal);
    try {
      const current = await ensureAppDatabase(admin, spec.slug, spec.password, verifier);
      instance.postgres.process.supervise();
      return current;
    } finally {
      await admin.end().catch(() => undefined);
    }
  }

  /** PgBouncer running with a config and userlist that give the app role `appVerifier`. */
  private async startPooler(instance: Instance, appVerifier: string, adminSaved = true): Promise<void> {
    const admin = instance.admin!;
    if (!adminSaved) await saveAdminPassword(instance.paths, admin, this.runAs);
    const changed = await writePoolerFiles({
      paths: instance.paths,
      slug: instance.slug,
      appRole: appRoleName(instance.slug),
      port: instance.pgbouncer.port,
      admin,
      appVerifier,
      preparedStatementsSupported: this.binaries.pgbouncer.preparedStatementsSupported,
      runAs: this.runAs,
    });
    if (!instance.pgbouncer.running && !instance.pgbouncer.process.supervising) await instance.pgbouncer.start();
    else if (changed && instance.pgbouncer.running) await instance.pgbouncer.reload(admin.password);
  }

  /**
   * The deploy engine calls ensure on every deploy: when nothing has died since
   * the last end-to-end check and the password is the one verified then, there
   * is nothing to redo.
   */
  private isHealthy(instance: Instance, password: string): boolean {
    const digest = instance.passwordDigest;
    return (
      instance.healthy &&
      instance.postgres.running &&
      instance.pgbouncer.running &&
      digest !== undefined &&
      timingSafeEqual(digest, this.digest(password))
    );
  }

  private digest(password: string): Buffer {
    return createHmac("sha256", this.digestKey).update(password).digest();
  }

  private ensureTemplate(): Promise<string> {
    this.template ??= ensureTemplateCluster({
      templatesDir: templatesRoot(this.options.dataDir),
      binaries: this.binaries.postgres,
      runAs: this.runAs,
      logger: this.logger,
      timeoutMs: Math.max(this.options.readyTimeoutMs, 120_000),
    }).catch((error: unknown) => {
      this.template = undefined;
      throw error;
    });
    return this.template;
  }

  /** The instance directory with its owner marker and a data directory: a warm instance's, or see prepareDataDir. */
  private async prepareInstanceDir(spec: DatabaseSpec, paths: InstancePaths, template: string): Promise<PreparedDir> {
    const warm = await this.claimWarmInstance(spec, paths);
    if (warm) return { created: true, warm };
    await ensureOwnedDir(paths.dir, this.runAs, 0o700);
    const marker = (await readIfExists(paths.projectMarker))?.trim();
    if (marker !== undefined && marker !== spec.projectId) throw slugTaken(spec.slug);
    if (marker === undefined) await writeOwnedFile(paths.projectMarker, `${spec.projectId}\n`, this.runAs, 0o600);
    return prepareDataDir({ slug: spec.slug, paths, template, major: this.binaries.postgres.major, runAs: this.runAs, logger: this.logger });
  }

  /**
   * For a project whose directory does not exist yet: a warm instance, claimed
   * with the project's marker and renamed to the project's directory while its
   * PostgreSQL runs on. Undefined when none is ready or it cannot move there.
   */
  private async claimWarmInstance(spec: DatabaseSpec, paths: InstancePaths): Promise<ClaimedWarmInstance | undefined> {
    // A socket dir outside the instance dir (long paths) would not move with it.
    if (this.pool.size === 0 || !isInside(paths.socketDir, paths.dir) || (await pathExists(paths.dir))) return undefined;
    const warm = this.pool.take();
    if (!warm) return undefined;
    try {
      await writeOwnedFile(warm.paths.projectMarker, `${spec.projectId}\n`, this.runAs, 0o600);
      await rename(warm.paths.dir, paths.dir);
    } catch (error) {
      this.logger.warn({ slug: spec.slug, err: errorMessage(error) }, "could not use a warm instance; copying the template instead");
      this.pool.discard(warm);
      return undefined;
    }
    // Straight after the rename: the postmaster reaches its files through the
    // path it was started with for as long as it runs.
    const alias = warm.paths.dir;
    try {
      await symlink(paths.dir, alias);
      await syncDir(dirname(paths.dir));
    } catch (error) {
      await stopPostgres(warm.postgres, alias);
      throw error;
    }
    return { postgres: warm.postgres, alias };
  }

  private allocatePort(projectId: string): number {
    const busy = listeningPorts();
    const { portRange } = this.options;
    try {
      return this.options.ports.allocate(projectId, portRange, (port) => !busy.has(port));
    } catch (error) {
      throw new RuntimeError(
        "unavailable",
        `no free pooler port left in ${portRange.min}-${portRange.max} on ${LOOPBACK} (SOTA_POOLER_PORTS)`,
        { cause: error },
      );
    }
  }

  /** `warm`: a running warm PostgreSQL whose directory is now the project's. */
  private createInstance(spec: DatabaseSpec, paths: InstancePaths, port: number, warm?: ClaimedWarmInstance): Instance {
    const postgresOptions = this.postgresOptions(spec.slug, paths);
    const { logger } = postgresOptions;
    warm?.postgres.relocate(postgresOptions);
    const postgres = warm?.postgres ?? new PostgresServer(postgresOptions);
    const pgbouncer = new PgbouncerServer({
      slug: spec.slug,
      binary: this.binaries.pgbouncer,
      runAs: this.runAs,
      dir: paths.dir,
      iniFile: paths.pgbouncerIni,
      pidFile: paths.pgbouncerPid,
      logFile: paths.pgbouncerLog,
      logger,
      port,
    });
    const instance: Instance = {
      slug: spec.slug,
      projectId: spec.projectId,
      paths,
      logger,
      postgres,
      pgbouncer,
      admin: undefined,
      healthy: false,
      passwordDigest: undefined,
      result: undefined,
      alias: warm?.alias,
    };
    const unhealthy = (): void => {
      instance.healthy = false;
    };
    postgres.process.onExit(() => {
      unhealthy();
      // Restarts use the instance's own path.
      void dropAlias(instance);
    });
    pgbouncer.process.onExit(unhealthy);
    return instance;
  }

  private postgresOptions(slug: string, paths: InstancePaths, pgdata = paths.pgdata): PostgresServerOptions {
    return {
      name: slug,
      binaries: this.binaries.postgres,
      runAs: this.runAs,
      pgdata,
      socketDir: paths.socketDir,
      socketDirShared: !isInside(paths.socketDir, paths.dir),
      logFile: paths.postgresLog,
      logger: this.logger.child({ slug }),
    };
  }

  private runningInstance(target: RuntimeTarget): Instance {
    const instance = this.instances.get(target.slug);
    if (!instance || instance.projectId !== target.projectId || !instance.postgres.running) {
      throw new RuntimeError("unavailable", `database ${target.slug} is not running in this service; ensure it first`);
    }
    return instance;
  }

  private assertOpen(): void {
    if (this.closing.signal.aborted) throw new RuntimeError("unavailable", "the process runtime has been closed");
  }
}

/** Waits for all, then fails with the first failure: none is left running unawaited. */
async function settleAll<T extends readonly unknown[]>(...work: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const outcomes = await Promise.allSettled(work);
  const failed = outcomes.find((outcome) => outcome.status === "rejected");
  if (failed) throw failed.reason;
  return outcomes.map((outcome) => (outcome as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function templatesRoot(dataDir: string): string {
  return join(dataDir, "templates");
}

function warmRoot(dataDir: string): string {
  return join(dataDir, "warm");
}

function endpointFor(port: number): Endpoint {
  return { host: LOOPBACK, port, loopback: { host: LOOPBACK, port } };
}

async function stopInstance(instance: Instance): Promise<void> {
  instance.healthy = false;
  // The pooler first: its SIGINT lets transactions in flight finish against a live server.
  await instance.pgbouncer.stop();
  await instance.postgres.stop();
  await dropAlias(instance);
}

/** Stops a postmaster started under `alias`, keeping the alias until it is down (its shutdown checkpoint goes through it). */
async function stopPostgres(postgres: PostgresServer, alias: string): Promise<void> {
  await postgres.stop();
  await rm(alias, { force: true });
}

async function dropAlias(instance: Instance): Promise<void> {
  const alias = instance.alias;
  if (alias === undefined) return;
  instance.alias = undefined;
  await rm(alias, { force: true }).catch(() => undefined);
}

/** Slugs become paths and identifiers: the driver re-checks what the service validated. */
function checkTarget(target: RuntimeTarget): void {
  if (target.slug.length > MAX_SLUG_LENGTH || !SLUG.test(target.slug) || target.slug.endsWith("-")) {
    throw new RuntimeError("failed", `invalid slug ${JSON.stringify(target.slug.slice(0, 60))}`);
  }
  if (!PROJECT_ID.test(target.projectId)) throw new RuntimeError("failed", "invalid project id");
}

function slugTaken(slug: string): RuntimeError {
  return new RuntimeError("conflict", `database ${slug} belongs to another project`);
}

function failedStream(error: unknown): Readable {
  const stream = new PassThrough();
  process.nextTick(() => stream.destroy(error instanceof Error ? error : new Error(String(error))));
  return stream;
}

function isInside(path: string, dir: string): boolean {
  return path.startsWith(dir + sep);
}
