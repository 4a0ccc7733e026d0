// The process driver: each project's PostgreSQL and PgBouncer run as
// supervised child processes of the service, from the host's installation.
// This class only holds the parts and serialises the work per project; the
// steps live beside it.
import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import type { Readable } from "node:stream";
import type { Logger } from "../../log.js";
import { DUMP_ROLE, dumpRoleSql } from "../shared/dump-role.js";
import { KeyedLock } from "../keyed-lock.js";
import type { PortRange, PortRegistry } from "../port-registry.js";
import {
  RuntimeError,
  type DatabaseSpec,
  type EnsureResult,
  type LimitsStatus,
  type LostPoolerPort,
  type OutOfMemoryKills,
  type PointInTimeRecovery,
  type ResourceLimits,
  type RemoveOptions,
  type Rows,
  type Runtime,
  type RuntimeStatus,
  type RuntimeTarget,
} from "../runtime.js";
import type { DriverParts } from "./driver-parts.js";
import { ensureInstance } from "./ensure-steps.js";
import { instancePaths, instancesRoot, sparesRoot, templatesRoot, warmRoot } from "./instance/instance-paths.js";
import { InstanceUsers, type AccountTools } from "./host/instance-users.js";
import { assertUsersCanReach, resolveUserPolicy, type UserPolicy } from "./host/os-user.js";
import { ensureDir, readIfExists, SERVICE_USER } from "./host/owned-files.js";
import { findProgram } from "./host/path-checks.js";
import { PasswordDigests } from "./instance/password-digest.js";
import { appRoleName } from "../shared/app-role.js";
import { appRoleSocketClient, queryOnce, superuserClient } from "./sql/pg-clients.js";
import { endpointFor } from "./instance/pooler-endpoint.js";
import { PoolerSockets } from "./host/pooler-sockets.js";
import { assertBinariesPresent, discoverBinaries, type Binaries } from "./host/postgres-binaries.js";
import { stopInstance, type Instance } from "./instance/project-instance.js";
import { removeInstance } from "./remove-steps.js";
import { dumpStream, restoreFromStream, streamAfter } from "./sql/sql-tools.js";
import { failedStream } from "../shared/failed-stream.js";
import { checkSpec, checkTarget } from "../shared/target-checks.js";
import { RuntimeClosing } from "../shared/runtime-closing.js";
import { SpareCopies, type SpareCopiesState } from "./reserves/spare-copies.js";
import { sharedTemplateCluster } from "./reserves/template-cluster.js";
import { WarmPool, type WarmPoolState } from "./reserves/warm-pool.js";
import { CgroupHost } from "./host/instance-cgroups.js";
import { instanceLimitsStatus, reportOutOfMemory } from "./instance/instance-limits.js";
import { ProcessPitr } from "./pitr/process-pitr.js";

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
  /**
   * When the service runs as root: one OS user that every instance runs as
   * (SOTA_RUN_AS_USER), as in earlier releases. Unset (the default), each
   * instance runs as an OS user of its own, made and deleted by the service.
   */
  readonly runAsUser?: string | undefined;
  /** Bound on how long ensure waits for PostgreSQL and for a query through PgBouncer. */
  readonly readyTimeoutMs: number;
  /**
   * Started, unassigned instances kept ready for new databases (SOTA_WARM_POOL;
   * default 0, none). Each costs one idle PostgreSQL's memory.
   */
  readonly warmPool?: number | undefined;
  /**
   * Flushed copies of the template kept on disk, not started, for new
   * databases (SOTA_SPARE_COPIES; default here 0, the service's 1). Each costs
   * the template's size on disk and no memory.
   */
  readonly spareCopies?: number | undefined;
  /** Every database's resource limits unless its project overrides them (SOTA_DB_*); default: none. */
  readonly limits?: ResourceLimits | undefined;
  /** Where the cgroup file systems are mounted (tests); default /sys/fs/cgroup. */
  readonly cgroupRoot?: string | undefined;
  readonly logger: Logger;
}

/** How often each database's out-of-memory count is looked at. */
const OOM_CHECK_MS = 5_000;
const NO_LIMITS: ResourceLimits = { memoryMb: 0, cpus: 0, pids: 0, shmMb: 0 };

/**
 * Finds the binaries and the run-as user and prepares the data dir; fails with
 * one clear line (a RuntimeError "unavailable") when the host cannot run it.
 */
export async function createProcessRuntime(options: ProcessRuntimeOptions): Promise<ProcessRuntime> {
  const binaries = await discoverBinaries(options);
  const policy = await resolveUserPolicy(options.runAsUser);
  const accountTools = policy.perInstance ? await findAccountTools() : undefined;
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true });
  const dirs = [instancesRoot(dataDir), templatesRoot(dataDir), warmRoot(dataDir), sparesRoot(dataDir)];
  // The service's: instances' users pass through to their own directories, and list nothing.
  for (const dir of dirs) await ensureDir(dir, { ...SERVICE_USER, mode: 0o711 });
  await assertUsersCanReach(policy, dataDir, dirs);
  logUserPolicy(policy, options.logger);
  const cgroups = await CgroupHost.detect({ ...(options.cgroupRoot ? { root: options.cgroupRoot } : {}), logger: options.logger });
  const users = new InstanceUsers(policy, accountTools, options.logger);
  const runtime = new ProcessRuntime({ ...options, dataDir }, binaries, users, cgroups);
  await runtime.openReserves();
  return runtime;
}

/** useradd and userdel, which make and delete the instances' users. */
async function findAccountTools(): Promise<AccountTools> {
  const [useradd, userdel] = await Promise.all([findProgram("useradd"), findProgram("userdel")]);
  if (useradd === undefined || userdel === undefined) {
    throw new RuntimeError(
      "unavailable",
      `the service runs as root but ${useradd === undefined ? "useradd" : "userdel"} is not installed to give each database an OS user of its own: install the passwd package, or set SOTA_RUN_AS_USER to run every database as one shared OS user (no isolation between them)`,
    );
  }
  return { useradd, userdel };
}

/** Says at start what the instances run as, and what that isolates. */
function logUserPolicy(policy: UserPolicy, logger: Logger): void {
  if (policy.perInstance) {
    logger.info("each database runs as an OS user of its own");
  } else if (policy.shared.switchUser) {
    logger.warn(
      { user: policy.shared.name },
      "every database runs as one shared OS user (SOTA_RUN_AS_USER): a tenant who becomes superuser of its cluster can reach the others",
    );
  } else {
    logger.warn(
      { user: policy.shared.name },
      "the service does not run as root: every database runs as the service's own OS user, so a tenant who becomes superuser of its cluster can reach the others and the service's state",
    );
  }
}

export class ProcessRuntime implements Runtime {
  readonly kind = "process";
  private readonly instances = new Map<string, Instance>();
  private readonly locks = new KeyedLock();
  private readonly closing = new RuntimeClosing("process");
  private readonly pool: WarmPool;
  private readonly spares: SpareCopies;
  private readonly parts: DriverParts;
  private closed: Promise<void> | undefined;
  /** WAL archiving, base backups and recoveries (see pitr/). */
  readonly pitr: PointInTimeRecovery;

  /** Prefer createProcessRuntime, which checks the host first. */
  constructor(
    private readonly options: ProcessRuntimeOptions,
    readonly binaries: Binaries,
    /** Who each instance runs as. */
    readonly users: InstanceUsers,
    /** How each instance is limited; by default, it is not. */
    readonly cgroups: CgroupHost = CgroupHost.none(),
  ) {
    const template = sharedTemplateCluster({
      templatesDir: templatesRoot(options.dataDir),
      binaries: binaries.postgres,
      users,
      logger: options.logger,
      timeoutMs: Math.max(options.readyTimeoutMs, 120_000),
    });
    this.pool = new WarmPool({
      size: options.warmPool ?? 0,
      root: warmRoot(options.dataDir),
      binaries: binaries.postgres,
      users,
      logger: options.logger,
      template,
      startTimeoutMs: Math.max(options.readyTimeoutMs, 30_000),
    });
    this.spares = new SpareCopies({
      size: options.spareCopies ?? 0,
      root: sparesRoot(options.dataDir),
      major: binaries.postgres.major,
      users,
      logger: options.logger,
      template,
    });
    this.parts = {
      binaries,
      users,
      logger: options.logger,
      dataDir: options.dataDir,
      ports: options.ports,
      portRange: options.portRange,
      readyTimeoutMs: options.readyTimeoutMs,
      instances: this.instances,
      pool: this.pool,
      spares: this.spares,
      digests: new PasswordDigests(),
      poolerSockets: new PoolerSockets(),
      cgroups,
      defaultLimits: options.limits ?? NO_LIMITS,
      closing: this.closing.signal,
      template,
    };
    this.pitr = new ProcessPitr({ parts: this.parts, locks: this.locks, closing: this.closing, running: (target) => this.runningInstance(target) });
    if (cgroups.mechanism !== "none") {
      this.oomCheck = setInterval(() => void this.checkOutOfMemory(), OOM_CHECK_MS);
      this.oomCheck.unref();
    }
  }

  private readonly oomCheck: NodeJS.Timeout | undefined;

  private async checkOutOfMemory(): Promise<void> {
    await Promise.all([...this.instances.values()].map((instance) => reportOutOfMemory(instance)));
  }

  get warmPool(): WarmPoolState {
    return this.pool;
  }

  get spareCopies(): SpareCopiesState {
    return this.spares;
  }

  /**
   * Cleans up what an earlier run left in the warm pool's and the spares'
   * directories (also when they are off), then starts filling them in the
   * background. Before any ensure: the clean-up stops postmasters that ensure
   * would otherwise find.
   */
  async openReserves(): Promise<void> {
    await this.pool.cleanUp();
    await this.spares.cleanUp();
    this.refillReserves();
  }

  /** Starts bringing the warm pool and the spares to their sizes, in the background. */
  refillReserves(): void {
    if (this.closing.closed) return;
    this.pool.fill();
    this.spares.fill();
  }

  async ensure(spec: DatabaseSpec, signal?: AbortSignal): Promise<EnsureResult> {
    this.closing.assertOpen();
    checkSpec(spec);
    const ensureLocked = (): Promise<EnsureResult> => {
      this.closing.assertOpen();
      return ensureInstance(this.parts, spec, signal);
    };
    // A warm instance or spare taken by this ensure is replaced once it is
    // done, so the copy does not compete with it for the CPU and the disk.
    return this.locks.run(spec.slug, ensureLocked).finally(() => this.refillReserves());
  }

  async status(target: RuntimeTarget): Promise<RuntimeStatus> {
    this.closing.assertOpen();
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
      const instance = this.runningInstance(target);
      const { socketDir } = instance.paths;
      const dumpRole = queryOnce(superuserClient(socketDir, "postgres"), dumpRoleSql(appRoleName(target.slug)));
      return streamAfter(dumpRole, () => dumpStream(this.binaries.postgres.pgDump, { socketDir, role: DUMP_ROLE, database: target.slug }));
    } catch (error) {
      return failedStream(error);
    }
  }

  async restore(target: RuntimeTarget, sql: Readable, database?: string): Promise<void> {
    const instance = this.runningInstance(target);
    const session = { socketDir: instance.paths.socketDir, role: appRoleName(target.slug), database: database ?? target.slug };
    await restoreFromStream(this.binaries.postgres.psql, session, sql);
  }

  async adminQuery(target: RuntimeTarget, sql: string, database = "postgres"): Promise<Rows> {
    const instance = this.runningInstance(target);
    return queryOnce(superuserClient(instance.paths.socketDir, database), sql);
  }

  async appQuery(target: RuntimeTarget, sql: string, database?: string): Promise<Rows> {
    const instance = this.runningInstance(target);
    return queryOnce(appRoleSocketClient(instance.paths.socketDir, appRoleName(target.slug), database ?? target.slug), sql);
  }

  async poolerCommand(target: RuntimeTarget, command: string): Promise<Rows> {
    const instance = this.runningInstance(target);
    if (!instance.pgbouncer.running || instance.admin === undefined) {
      throw new RuntimeError("unavailable", `the pooler of ${target.slug} is not running; ensure it first`);
    }
    return instance.pgbouncer.console(instance.admin.password, command);
  }

  async remove(target: RuntimeTarget, options: RemoveOptions): Promise<void> {
    this.closing.assertOpen();
    checkTarget(target);
    await this.locks.run(target.slug, () => {
      this.closing.assertOpen();
      return removeInstance(this.parts, target, options);
    });
  }

  async ping(): Promise<void> {
    this.closing.assertOpen();
    await assertBinariesPresent(this.binaries);
  }

  async limitsStatus(target: RuntimeTarget): Promise<LimitsStatus> {
    this.closing.assertOpen();
    checkTarget(target);
    const instance = this.instances.get(target.slug);
    if (!instance || instance.projectId !== target.projectId) {
      throw new RuntimeError("unavailable", `database ${target.slug} is not running in this service; ensure it first`);
    }
    await reportOutOfMemory(instance);
    return instanceLimitsStatus(instance);
  }

  outOfMemoryKills(): OutOfMemoryKills[] {
    return [...this.instances.values()]
      .filter((instance) => instance.oomKillsSeen > instance.oomKillsBase)
      .map((instance) => ({ projectId: instance.projectId, kills: instance.oomKillsSeen - instance.oomKillsBase }));
  }

  lostPoolerPorts(): LostPoolerPort[] {
    return [...this.instances.values()]
      .filter((instance) => instance.pgbouncer.portLost)
      .map((instance) => ({ slug: instance.slug, port: instance.pgbouncer.port }));
  }

  close(): Promise<void> {
    this.closed ??= this.shutDown();
    return this.closed;
  }

  private async shutDown(): Promise<void> {
    this.closing.begin();
    clearInterval(this.oomCheck);
    await this.locks.settled();
    await Promise.all([this.pool.close(), this.spares.close(), ...[...this.instances.values()].map((instance) => stopInstance(instance))]);
    this.instances.clear();
    await this.parts.poolerSockets.close();
    this.options.logger.info("process runtime stopped");
  }

  /** Also checks the runtime is open and the target valid: the callers' shared preamble. */
  private runningInstance(target: RuntimeTarget): Instance {
    this.closing.assertOpen();
    checkTarget(target);
    const instance = this.instances.get(target.slug);
    if (!instance || instance.projectId !== target.projectId || !instance.postgres.running) {
      throw new RuntimeError("unavailable", `database ${target.slug} is not running in this service; ensure it first`);
    }
    return instance;
  }
}
