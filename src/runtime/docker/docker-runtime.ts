// The Docker driver: per project a PostgreSQL container sota-db-{slug} and a
// PgBouncer container sota-pgbouncer-{slug} on a private network only they
// share, PgBouncer also on the app-facing network, data in a named volume.
// Everything it creates carries io.sota.* labels; it never adopts nor deletes
// an object under a managed name that lacks them. This class only holds the
// parts and serialises the work per project; the steps live beside it.
import type { Readable } from "node:stream";
import Docker from "dockerode";
import type { Logger } from "../../log.js";
import { KeyedLock } from "../keyed-lock.js";
import { failedStream } from "../shared/failed-stream.js";
import { RuntimeClosing } from "../shared/runtime-closing.js";
import { checkSpec } from "../shared/target-checks.js";
import {
  RuntimeError,
  type DatabaseSpec,
  type EnsureResult,
  type RemoveOptions,
  type Rows,
  type Runtime,
  type RuntimeStatus,
  type RuntimeTarget,
} from "../runtime.js";
import type { LimitsStatus, ResourceLimits } from "../shared/resource-limits.js";
import { isRunning, DockerEngine } from "./docker-engine.js";
import { projectNames, type ProjectNames } from "./docker-names.js";
import { projectVolumeExists } from "./docker-volumes.js";
import {
  DEFAULT_APP_NETWORK,
  DEFAULT_PGBOUNCER_IMAGE,
  DEFAULT_POSTGRES_IMAGE,
  DEFAULT_POSTGRES_MEMORY_MB,
  DEFAULT_POSTGRES_SHM_MB,
  DEFAULT_READY_TIMEOUT_MS,
  DEFAULT_RECOVERY_TIMEOUT_MS,
  DEFAULT_WAL_SLOT_KEEP_MB,
  endpointOf,
  type DriverSettings,
} from "./driver-settings.js";
import { ensureProject, type ProjectEnsured } from "./ensure-steps.js";
import { DockerPointInTimeRecovery } from "./docker-pitr.js";
import type { RecoveryParts } from "./recovery-steps.js";
import { settleInterruptedRecovery } from "./recovery-undo.js";
import { dropRecoveryLeftovers } from "./recovery-volume.js";
import { ensureWalArchive } from "./wal-setup.js";
import { loggableError } from "../../log.js";
import { ImagePuller } from "./image-puller.js";
import { consoleQuery } from "./pgbouncer-container.js";
import { PgbouncerImageFactsCache } from "./pgbouncer-image-facts.js";
import { appRoleQuery, superuserQuery } from "./postgres-container.js";
import { postgresLimitsStatus } from "./container-limits.js";
import { POSTGRES_HARDENING } from "./container-hardening.js";
import { dumpDatabase, restoreDatabase } from "./postgres-dump.js";
import { PostgresTemplates } from "./postgres-template.js";
import { ProjectNetworks } from "./project-networks.js";
import { surveyContainers } from "./project-survey.js";
import { removeProject, stopLostProject } from "./remove-steps.js";

export {
  DEFAULT_APP_NETWORK,
  DEFAULT_PGBOUNCER_IMAGE,
  DEFAULT_POSTGRES_IMAGE,
  DEFAULT_READY_TIMEOUT_MS,
  PER_PROJECT_NETWORK,
} from "./driver-settings.js";

export interface DockerRuntimeOptions {
  /** Engine client; default: DOCKER_HOST, else /var/run/docker.sock. */
  readonly docker?: Docker;
  /** PostgreSQL 17 image honouring the official image's environment contract. */
  readonly postgresImage?: string;
  /** PgBouncer image: runs `pgbouncer /etc/pgbouncer/pgbouncer.ini`, has a `pgbouncer` user and psql. */
  readonly pgbouncerImage?: string;
  /** OS user PgBouncer runs as (SOTA_PGBOUNCER_USER); unset: the image's own USER unless root, else "pgbouncer". */
  readonly pgbouncerUser?: string;
  /** Network apps join to reach sota-pgbouncer-{slug}; "per-project" gives each project its own. */
  readonly appNetwork?: string;
  /**
   * Host address on which PgBouncer's port is published, on a port the engine
   * picks (e.g. "127.0.0.1" for development and tests). Unset: not published.
   */
  readonly publishHost?: string;
  /** Bound on how long ensure waits for PostgreSQL and for a query through PgBouncer. */
  readonly readyTimeoutMs?: number;
  /** Memory limit of each PostgreSQL container in MiB, swap included; 0: none. */
  readonly postgresMemoryMb?: number;
  /**
   * The other default limits of each PostgreSQL container (CPUs, pids, shm;
   * memory comes from postgresMemoryMb). Unset fields: no CPU limit, the
   * hardening's pids limit, 256 MB of shm.
   */
  readonly limits?: Partial<Omit<ResourceLimits, "memoryMb">>;
  /** max_slot_wal_keep_size of each WAL receiver's slot, in MB (default 1024). */
  readonly walSlotKeepMb?: number;
  /** Bound on a point-in-time recovery's replay (default 30 minutes). */
  readonly recoveryTimeoutMs?: number;
  /** Extra labels put on everything the driver creates (tests use one to clean up). */
  readonly labels?: Readonly<Record<string, string>>;
  readonly logger: Logger;
}

export class DockerRuntime implements Runtime, DriverSettings {
  readonly kind = "docker";
  readonly postgresImage: string;
  readonly pgbouncerImage: string;
  readonly appNetwork: string;
  readonly publishHost: string | undefined;
  readonly readyTimeoutMs: number;
  readonly postgresMemoryMb: number;
  readonly limits: ResourceLimits;
  readonly walSlotKeepMb: number;
  readonly recoveryTimeoutMs: number;
  private readonly engine: DockerEngine;
  readonly pitr: DockerPointInTimeRecovery;
  private readonly parts: RecoveryParts;
  private readonly locks = new KeyedLock();
  /** Per project, the WAL set-up ensure began and did not wait for. */
  private readonly walSetups = new Map<string, Promise<void>>();
  private readonly closing = new RuntimeClosing("docker");

  constructor(options: DockerRuntimeOptions) {
    this.postgresImage = options.postgresImage ?? DEFAULT_POSTGRES_IMAGE;
    this.pgbouncerImage = options.pgbouncerImage ?? DEFAULT_PGBOUNCER_IMAGE;
    this.appNetwork = options.appNetwork ?? DEFAULT_APP_NETWORK;
    this.publishHost = options.publishHost;
    this.readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    this.postgresMemoryMb = options.postgresMemoryMb ?? DEFAULT_POSTGRES_MEMORY_MB;
    this.walSlotKeepMb = options.walSlotKeepMb ?? DEFAULT_WAL_SLOT_KEEP_MB;
    this.recoveryTimeoutMs = options.recoveryTimeoutMs ?? DEFAULT_RECOVERY_TIMEOUT_MS;
    this.limits = {
      memoryMb: this.postgresMemoryMb,
      cpus: options.limits?.cpus ?? 0,
      pids: options.limits?.pids ?? POSTGRES_HARDENING.pidsLimit,
      shmMb: options.limits?.shmMb ?? DEFAULT_POSTGRES_SHM_MB,
    };
    const logger = options.logger.child({ runtime: "docker" });
    const engine = new DockerEngine(options.docker ?? new Docker(), logger, options.labels ?? {});
    this.engine = engine;
    this.parts = {
      engine,
      settings: this,
      images: new ImagePuller(engine.docker, logger, engine.endpoint),
      networks: new ProjectNetworks(engine, this, logger),
      templates: new PostgresTemplates(engine, this.postgresImage),
      pgbouncerFacts: new PgbouncerImageFactsCache(engine, this.pgbouncerImage, options.pgbouncerUser),
      walSetup: { slotKeepMb: this.walSlotKeepMb },
    };
    this.pitr = new DockerPointInTimeRecovery({
      parts: this.parts,
      openNames: (target) => this.openNames(target),
      locked: (slug, work) =>
        this.locks.run(slug, () => {
          this.closing.assertOpen();
          return work();
        }),
      walSettled: (slug) => this.walSettled(slug),
    });
  }

  async ping(): Promise<void> {
    this.closing.assertOpen();
    await this.engine.ping();
  }

  async ensure(spec: DatabaseSpec, signal?: AbortSignal): Promise<EnsureResult> {
    this.closing.assertOpen();
    checkSpec(spec);
    const names = projectNames(spec);
    return this.locks.run(spec.slug, async () => {
      this.closing.assertOpen();
      await this.walSettled(spec.slug);
      // A recovery the service died in the middle of is undone first.
      await settleInterruptedRecovery(this.parts, spec, names);
      try {
        const ensured = await ensureProject(this.parts, spec, names, signal);
        this.beginWalSetup(ensured);
        return ensured.result;
      } catch (error) {
        if (error instanceof RuntimeError && error.reason === "lost") await stopLostProject(this.engine, spec, names);
        throw error;
      }
    });
  }

  async status(target: RuntimeTarget): Promise<RuntimeStatus> {
    const names = this.openNames(target);
    const survey = await surveyContainers(this.engine, target, names);
    if (isRunning(survey.postgres) && isRunning(survey.pgbouncer) && survey.pgbouncer) {
      return { state: "running", endpoint: endpointOf(this, target, survey.pgbouncer) };
    }
    if (survey.postgres || survey.pgbouncer) return { state: "stopped" };
    return { state: (await projectVolumeExists(this.engine, target, names)) ? "stopped" : "missing" };
  }

  dump(target: RuntimeTarget): Readable {
    try {
      this.openNames(target);
    } catch (error) {
      return failedStream(error);
    }
    return dumpDatabase(this.engine, target);
  }

  async restore(target: RuntimeTarget, sql: Readable, database?: string): Promise<void> {
    this.openNames(target);
    return restoreDatabase(this.engine, target, sql, database);
  }

  async adminQuery(target: RuntimeTarget, sql: string, database = "postgres"): Promise<Rows> {
    const names = this.openNames(target);
    const container = await this.engine.runningContainer(target, names.postgres, "postgres");
    return superuserQuery(this.engine, container, sql, database);
  }

  async appQuery(target: RuntimeTarget, sql: string, database?: string): Promise<Rows> {
    const names = this.openNames(target);
    const container = await this.engine.runningContainer(target, names.postgres, "postgres");
    return appRoleQuery(this.engine, container, names.role, sql, database ?? names.database);
  }

  async poolerCommand(target: RuntimeTarget, command: string): Promise<Rows> {
    const names = this.openNames(target);
    const container = await this.engine.runningContainer(target, names.pgbouncer, "pgbouncer");
    return consoleQuery(this.engine, container, command);
  }

  async remove(target: RuntimeTarget, options: RemoveOptions): Promise<void> {
    const names = this.openNames(target);
    await this.locks.run(target.slug, async () => {
      this.closing.assertOpen();
      await this.walSettled(target.slug);
      return removeProject(this.engine, this.parts.networks, target, names, options);
    });
  }

  async limitsStatus(target: RuntimeTarget): Promise<LimitsStatus> {
    const names = this.openNames(target);
    const container = await this.engine.runningContainer(target, names.postgres, "postgres");
    return postgresLimitsStatus(this.engine, container);
  }

  async close(): Promise<void> {
    // Containers keep running: they are the databases. Only in-flight work is awaited.
    this.closing.begin();
    await this.locks.settled();
    await Promise.all(this.walSetups.values());
  }

  /**
   * The WAL receiver is set up after ensure has returned, so it never holds
   * ensure up (and a cluster a committed recovery replaced, if the service
   * died before dropping it, is dropped); the next call for the project (ensure, remove, any of pitr's)
   * waits for it first. A failure is logged, and the next ensure tries again.
   */
  private beginWalSetup(ensured: ProjectEnsured): void {
    const { slug, projectId } = ensured.wal.target;
    const setup = dropRecoveryLeftovers(this.engine, ensured.wal.postgres)
      .then(() => ensureWalArchive(ensured.wal, this.parts.walSetup))
      .then(
      (generation) => this.engine.logger.debug({ slug, generation }, "WAL archiving"),
      (error: unknown) =>
        this.engine.logger.warn({ slug, projectId, err: loggableError(error) }, "could not set up the database's WAL archiving; the next ensure tries again"),
    );
    this.walSetups.set(slug, setup);
    void setup.finally(() => {
      if (this.walSetups.get(slug) === setup) this.walSetups.delete(slug);
    });
  }

  private async walSettled(slug: string): Promise<void> {
    await this.walSetups.get(slug);
  }

  /** The callers' shared preamble: the runtime is open and the target valid. */
  private openNames(target: RuntimeTarget): ProjectNames {
    this.closing.assertOpen();
    return projectNames(target);
  }
}
