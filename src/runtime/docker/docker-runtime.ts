// The Docker driver: per project a PostgreSQL container sota-db-{slug} and a
// PgBouncer container sota-pgbouncer-{slug} on a private network only they
// share, PgBouncer also on the app-facing network, data in a named volume.
// Everything it creates carries io.sota.* labels; it never adopts nor deletes
// an object under a managed name that lacks them.
import { randomBytes } from "node:crypto";
import { PassThrough, type Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import Docker from "dockerode";
import type { Logger } from "../../log.js";
import { KeyedLock } from "../keyed-lock.js";
import {
  RuntimeError,
  type DatabaseSpec,
  type Endpoint,
  type EnsureResult,
  type PoolerInfo,
  type RemoveOptions,
  type Runtime,
  type RuntimeStatus,
  type RuntimeTarget,
} from "../runtime.js";
import { appStateQuery, planAppRole, SUPERUSER, superuserConninfo } from "./app-role-sql.js";
import {
  engineMessage,
  isConflict,
  isNotFound,
  redactSecrets,
  statusCodeOf,
  toRuntimeError,
} from "./docker-errors.js";
import { execCollect, execReadable, type CollectedExec, type ExecSpec } from "./docker-exec.js";
import {
  CONTAINER_PORT,
  ownershipProblem,
  PGDATA,
  PORT_KEY,
  projectLabels,
  projectNames,
  sharedLabels,
  type ObjectRole,
  type ProjectNames,
} from "./docker-names.js";
import { DockerNetworks } from "./docker-networks.js";
import { ImagePuller } from "./image-puller.js";
import {
  CONSOLE_USER,
  PGBOUNCER_CONFIG_DIR,
  PGBOUNCER_INI,
  PGBOUNCER_OS_USER,
  PGBOUNCER_SOCKET_DIR,
  PGBOUNCER_USERLIST,
  renderContainerPgbouncerIni,
  renderUserlist,
  supportsPreparedStatements,
} from "./pgbouncer-container-config.js";
import { nullMarker, parsePsqlCsv, type Rows } from "./psql-csv.js";
import { tarArchive } from "./tar-archive.js";

/** The app-facing network mode in which each project gets its own network, sota-app-{slug}. */
export const PER_PROJECT_NETWORK = "per-project";

export const DEFAULT_POSTGRES_IMAGE = "postgres:17";
/** Built locally by scripts/docker/build-images.sh (there is no official PgBouncer image). */
export const DEFAULT_PGBOUNCER_IMAGE = "sota-db/pgbouncer:1.24-trixie";
/** The seed's shared network: apps and PgBouncer meet there. */
export const DEFAULT_APP_NETWORK = "traefik-public";
export const DEFAULT_READY_TIMEOUT_MS = 120_000;

export interface DockerRuntimeOptions {
  /** Engine client; default: DOCKER_HOST, else /var/run/docker.sock. */
  readonly docker?: Docker;
  /** PostgreSQL 17 image honouring the official image's environment contract. */
  readonly postgresImage?: string;
  /** PgBouncer image: runs `pgbouncer /etc/pgbouncer/pgbouncer.ini`, has a `pgbouncer` user and psql. */
  readonly pgbouncerImage?: string;
  /** Network apps join to reach sota-pgbouncer-{slug}; "per-project" gives each project its own. */
  readonly appNetwork?: string;
  /**
   * Host address on which PgBouncer's port is published, on a port the engine
   * picks (e.g. "127.0.0.1" for development and tests). Unset: not published.
   */
  readonly publishHost?: string;
  /** Bound on how long ensure waits for PostgreSQL and for a query through PgBouncer. */
  readonly readyTimeoutMs?: number;
  /** Extra labels put on everything the driver creates (tests use one to clean up). */
  readonly labels?: Readonly<Record<string, string>>;
  readonly logger: Logger;
}

const PING_TIMEOUT_MS = 5_000;
/** PostgreSQL's fast shutdown (SIGINT) normally takes a second; SIGKILL after this. */
const STOP_TIMEOUT_SECONDS = 30;
const CONNECT_TIMEOUT_ENV = "PGCONNECT_TIMEOUT=10";
const PG_OS_USER = "postgres";

/** The PgBouncer image's version and the numeric ids of its unprivileged user. */
interface PgbouncerImageFacts {
  readonly version: string;
  readonly uid: number;
  readonly gid: number;
}

interface Survey {
  readonly postgres: Docker.ContainerInspectInfo | undefined;
  readonly pgbouncer: Docker.ContainerInspectInfo | undefined;
}

function isRunning(info: Docker.ContainerInspectInfo | undefined): boolean {
  return Boolean(info?.State.Running && !info.State.Restarting && !info.State.Paused);
}

function describeEngine(docker: Docker): string {
  const modem = docker.modem as unknown as { socketPath?: string; host?: string; port?: string | number; protocol?: string };
  if (modem.socketPath) return `unix://${modem.socketPath}`;
  return `${modem.protocol ?? "http"}://${modem.host ?? "localhost"}:${String(modem.port ?? "")}`;
}

function isLoopbackHost(host: string): boolean {
  return host === "::1" || host.startsWith("127.");
}

/** psql's first ERROR line (psql then prints the statement, which is not needed). */
function firstError(stderr: string): string {
  const lines = stderr.split("\n").map((line) => line.trim()).filter(Boolean);
  const line = lines.find((candidate) => /\b(ERROR|FATAL):/.test(candidate)) ?? lines.at(-1);
  return line ? `: ${redactSecrets(line).slice(0, 300)}` : "";
}

export class DockerRuntime implements Runtime {
  readonly kind = "docker";
  readonly postgresImage: string;
  readonly pgbouncerImage: string;
  readonly appNetwork: string;
  readonly publishHost: string | undefined;
  readonly readyTimeoutMs: number;
  private readonly docker: Docker;
  private readonly engine: string;
  private readonly labels: Readonly<Record<string, string>>;
  private readonly logger: Logger;
  private readonly images: ImagePuller;
  private readonly networks: DockerNetworks;
  private readonly locks = new KeyedLock();
  private readonly networkLocks = new KeyedLock();
  /** What a PgBouncer image runs as and which version, per image id, read once. */
  private readonly pgbouncerImageFacts = new Map<string, Promise<PgbouncerImageFacts>>();

  constructor(options: DockerRuntimeOptions) {
    this.docker = options.docker ?? new Docker();
    this.engine = describeEngine(this.docker);
    this.postgresImage = options.postgresImage ?? DEFAULT_POSTGRES_IMAGE;
    this.pgbouncerImage = options.pgbouncerImage ?? DEFAULT_PGBOUNCER_IMAGE;
    this.appNetwork = options.appNetwork ?? DEFAULT_APP_NETWORK;
    this.publishHost = options.publishHost;
    this.readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    this.labels = options.labels ?? {};
    this.logger = options.logger.child({ runtime: "docker" });
    this.images = new ImagePuller(this.docker, this.logger, this.engine);
    this.networks = new DockerNetworks(this.docker, this.logger, this.engine);
  }

  async ping(): Promise<void> {
    try {
      await Promise.race([
        this.docker.ping(),
        sleep(PING_TIMEOUT_MS, undefined, { ref: false }).then(() => {
          throw Object.assign(new Error("no answer"), { code: "ETIMEDOUT" });
        }),
      ]);
    } catch (error) {
      const detail = (error as { code?: string }).code ?? engineMessage(error);
      throw new RuntimeError("unavailable", `Docker engine unreachable at ${this.engine} (${detail})`, { cause: error });
    }
  }

  ensure(spec: DatabaseSpec, signal?: AbortSignal): Promise<EnsureResult> {
    let names: ProjectNames;
    try {
      names = projectNames(spec);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.locks.run(spec.slug, () => this.ensureLocked(spec, names, signal));
  }

  async status(target: RuntimeTarget): Promise<RuntimeStatus> {
    const names = projectNames(target);
    const survey = await this.survey(target, names);
    if (isRunning(survey.postgres) && isRunning(survey.pgbouncer) && survey.pgbouncer) {
      return { state: "running", endpoint: this.endpointOf(target, survey.pgbouncer) };
    }
    if (survey.postgres || survey.pgbouncer) return { state: "stopped" };
    const volume = await this.inspectVolume(target, names);
    return { state: volume ? "stopped" : "missing" };
  }

  dump(target: RuntimeTarget): Readable {
    let names: ProjectNames;
    try {
      names = projectNames(target);
    } catch (error) {
      return failedStream(error);
    }
    return execReadable(
      this.docker,
      this.runningContainer(target, names.postgres, "postgres"),
      {
        cmd: ["pg_dump", "--no-password", "--dbname", superuserConninfo(names.database)],
        user: PG_OS_USER,
        env: [CONNECT_TIMEOUT_ENV],
      },
      (outcome) =>
        outcome.exitCode === 0
          ? undefined
          : new RuntimeError(
              "failed",
              `pg_dump of ${names.database} in ${names.postgres} failed (exit code ${outcome.exitCode})${lastLine(outcome.stderr)}`,
            ),
      (error) => toRuntimeError(error, `dumping ${names.database} from ${names.postgres}`, this.engine),
    );
  }

  async restore(target: RuntimeTarget, sql: Readable, database?: string): Promise<void> {
    const names = projectNames(target);
    const dbName = database ?? names.database;
    const container = await this.runningContainer(target, names.postgres, "postgres");
    // The session is found by this name if the input breaks: it is ended on the
    // server before stdin closes, so psql can never COMMIT a partial restore.
    const session = `sota-restore-${randomBytes(8).toString("hex")}`;
    const input = new PassThrough();
    let inputError: unknown;
    sql.on("error", (error) => {
      inputError = error;
      sql.unpipe(input);
      void this.terminateSession(container, session).finally(() => input.destroy(error));
    });
    sql.pipe(input);
    // `-f -` reads stdin as a script, so --single-transaction wraps all of it.
    const psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--no-password", "-f", "-"];
    const outcome = await this.exec(
      container,
      `restoring into ${dbName}`,
      {
        cmd: [...psql, "--dbname", superuserConninfo(dbName)],
        user: PG_OS_USER,
        env: [CONNECT_TIMEOUT_ENV, `PGAPPNAME=${session}`],
        stdin: input,
      },
      { discardStdout: true },
    );
    if (inputError !== undefined) {
      throw new RuntimeError("failed", `restore into ${dbName} failed: the SQL stream broke off; nothing was applied`, {
        cause: inputError,
      });
    }
    if (outcome.exitCode !== 0) {
      throw new RuntimeError(
        "failed",
        `restore into ${dbName} failed (psql exit code ${outcome.exitCode})${firstError(outcome.stderr)}`,
      );
    }
  }

  async adminQuery(target: RuntimeTarget, sql: string, database = "postgres"): Promise<Rows> {
    const names = projectNames(target);
    const container = await this.runningContainer(target, names.postgres, "postgres");
    return this.superuserQuery(container, sql, database);
  }

  async poolerCommand(target: RuntimeTarget, command: string): Promise<Rows> {
    const names = projectNames(target);
    const container = await this.runningContainer(target, names.pgbouncer, "pgbouncer");
    return this.consoleQuery(container, command);
  }

  async remove(target: RuntimeTarget, options: RemoveOptions): Promise<void> {
    const names = projectNames(target);
    await this.locks.run(target.slug, async () => {
      // Every object is checked before any is touched: a foreign one under a
      // managed name stops the removal before anything is gone.
      const survey = await this.survey(target, names);
      const privateOwner = { target, role: "private-network" } as const;
      const appOwner = { target, role: "app-network" } as const;
      await this.networks.checkOwned(names.privateNetwork, privateOwner);
      const perProject = this.appNetwork === PER_PROJECT_NETWORK;
      if (perProject) await this.networks.checkOwned(names.projectAppNetwork, appOwner);
      const volume = options.keepData ? undefined : await this.inspectVolume(target, names);

      // The pooler first, then PostgreSQL with a clean shutdown (the data may be kept).
      for (const container of [survey.pgbouncer, survey.postgres]) {
        if (!container) continue;
        const handle = this.docker.getContainer(container.Id);
        await this.call(`removing container ${container.Name.replace(/^\//, "")}`, async () => {
          try {
            if (isRunning(container)) await handle.stop({ t: STOP_TIMEOUT_SECONDS }).catch(() => undefined);
            await handle.remove({ force: true, v: true });
          } catch (error) {
            if (!isNotFound(error)) throw error;
          }
        });
      }
      await this.networks.remove(names.privateNetwork, privateOwner);
      if (perProject) await this.networks.remove(names.projectAppNetwork, appOwner);
      if (volume) {
        await this.call(`removing volume ${names.volume}`, async () => {
          try {
            await this.docker.getVolume(names.volume).remove();
          } catch (error) {
            if (!isNotFound(error)) throw error;
          }
        });
      }
      this.logger.info({ slug: target.slug, projectId: target.projectId, keepData: options.keepData }, "database removed");
    });
  }

  async close(): Promise<void> {
    // Containers keep running: they are the databases. Only in-flight work is awaited.
    await this.locks.settled();
  }

  // ---- ensure, step by step; each step finds what a previous run left ----

  private async ensureLocked(spec: DatabaseSpec, names: ProjectNames, signal: AbortSignal | undefined): Promise<EnsureResult> {
    signal?.throwIfAborted();
    const started = Date.now();
    await this.ping();
    await Promise.all([this.images.ensure(this.postgresImage), this.images.ensure(this.pgbouncerImage)]);
    signal?.throwIfAborted();

    // Conflicts are found before anything is created.
    const survey = await this.survey(spec, names);
    const privateOwner = { target: spec, role: "private-network" } as const;
    await this.networks.checkOwned(names.privateNetwork, privateOwner);
    if (this.appNetwork === PER_PROJECT_NETWORK) {
      await this.networks.checkOwned(names.projectAppNetwork, { target: spec, role: "app-network" });
    }
    const volume = await this.inspectVolume(spec, names);

    const appNetworkId = await this.ensureAppNetwork(spec, names);
    // Internal: no route out of the host, and only the project's two containers on it.
    const privateNetworkId = await this.networks.ensure({
      name: names.privateNetwork,
      internal: true,
      labels: projectLabels(spec, "private-network", this.labels),
      owner: privateOwner,
    });
    if (!volume) await this.createVolume(spec, names);

    const postgres = await this.ensurePostgresContainer(spec, names, survey.postgres, privateNetworkId);
    const deadline = Date.now() + this.readyTimeoutMs;
    await this.waitFor(deadline, signal, `PostgreSQL in ${names.postgres} to accept connections`, names.postgres, async () =>
      (await this.postgresAccepts(postgres)) ? true : undefined,
    );
    const verifier = await this.ensureAppRole(postgres, names, spec.password);

    const facts = await this.pgbouncerFacts(spec);
    const pgbouncer = await this.ensurePgbouncerContainer(spec, names, survey.pgbouncer, appNetworkId, privateNetworkId);
    signal?.throwIfAborted();
    await this.writePgbouncerFiles(pgbouncer, names, verifier, facts);
    await this.startOrReloadPgbouncer(pgbouncer, names);

    let lastProblem = "";
    const postgresVersion = await this.waitFor(
      deadline,
      signal,
      `a query through PgBouncer (${names.pgbouncer})`,
      names.pgbouncer,
      async () => {
        const result = await this.queryThroughPooler(pgbouncer, names, spec.password);
        if (result.exitCode === 0) return result.stdout.trim();
        lastProblem = lastLine(result.stderr);
        if (/authentication failed/i.test(result.stderr)) {
          // Another service process ensuring the same project at the same
          // time may have set another verifier of the same password, or
          // written its files after PgBouncer read them: PgBouncer must hold
          // exactly PostgreSQL's verifier.
          const verifier = await this.ensureAppRole(postgres, names, spec.password);
          await this.writePgbouncerFiles(pgbouncer, names, verifier, facts);
          await this.startOrReloadPgbouncer(pgbouncer, names);
        }
        return undefined;
      },
      () => lastProblem,
    );
    const pooler = await this.poolerInfo(pgbouncer, facts.version);
    const info = await this.inspectContainer(names.pgbouncer);
    if (!info) throw new RuntimeError("failed", `container ${names.pgbouncer} disappeared while starting`);
    const endpoint = this.endpointOf(spec, info);
    this.logger.info(
      { slug: spec.slug, projectId: spec.projectId, network: endpoint.network, ms: Date.now() - started },
      "database ready",
    );
    return { endpoint, postgresVersion, pooler };
  }

  /** Both containers, checked to be this project's: a foreign one is a conflict. */
  private async survey(target: RuntimeTarget, names: ProjectNames): Promise<Survey> {
    const postgres = await this.inspectContainer(names.postgres);
    const pgbouncer = await this.inspectContainer(names.pgbouncer);
    for (const [info, role] of [
      [postgres, "postgres"],
      [pgbouncer, "pgbouncer"],
    ] as const) {
      if (!info) continue;
      const problem = ownershipProblem("container", info.Name.replace(/^\//, ""), info.Config.Labels, target, role);
      if (problem) throw new RuntimeError("conflict", problem);
    }
    return { postgres, pgbouncer };
  }

  private async inspectContainer(name: string): Promise<Docker.ContainerInspectInfo | undefined> {
    return this.call(`inspecting container ${name}`, async () => {
      try {
        return await this.docker.getContainer(name).inspect();
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    });
  }

  /** The project's data volume: undefined when missing, a conflict when foreign. */
  private async inspectVolume(target: RuntimeTarget, names: ProjectNames): Promise<Docker.VolumeInspectInfo | undefined> {
    const found = await this.call(`inspecting volume ${names.volume}`, async () => {
      try {
        return await this.docker.getVolume(names.volume).inspect();
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    });
    if (!found) return undefined;
    const problem = ownershipProblem("volume", names.volume, found.Labels, target, "data");
    if (problem) throw new RuntimeError("conflict", problem);
    return found;
  }

  /** The app-facing network's id, created when missing. */
  private async ensureAppNetwork(spec: DatabaseSpec, names: ProjectNames): Promise<string> {
    if (this.appNetwork === PER_PROJECT_NETWORK) {
      return this.networks.ensure({
        name: names.projectAppNetwork,
        internal: false,
        labels: projectLabels(spec, "app-network", this.labels),
        owner: { target: spec, role: "app-network" },
      });
    }
    // The shared network usually belongs to the platform (the seed's
    // traefik-public): used as it is; created, owned by no project, only when
    // missing. Projects ensuring in parallel create it once.
    const name = this.appNetwork;
    return this.networkLocks.run(name, () =>
      this.networks.ensure({ name, internal: false, labels: sharedLabels("app-network", this.labels) }),
    );
  }

  private async createVolume(spec: DatabaseSpec, names: ProjectNames): Promise<void> {
    await this.call(`creating volume ${names.volume}`, async () => {
      await this.docker.createVolume({ Name: names.volume, Labels: projectLabels(spec, "data", this.labels) });
    });
    // Volume creation is idempotent in the engine, so a racing creator's volume
    // comes back here too: check it is ours.
    await this.inspectVolume(spec, names);
    this.logger.info({ volume: names.volume }, "volume created");
  }

  private async ensurePostgresContainer(
    spec: DatabaseSpec,
    names: ProjectNames,
    existing: Docker.ContainerInspectInfo | undefined,
    privateNetworkId: string,
  ): Promise<Docker.Container> {
    if (existing && existing.Config.Image !== this.postgresImage) {
      // Data outlives images; switching PostgreSQL images is an operator's decision.
      this.logger.warn(
        { container: names.postgres, image: existing.Config.Image, configured: this.postgresImage },
        "PostgreSQL container runs another image than configured; keeping it",
      );
    }
    const info =
      existing ??
      (await this.createContainer(spec, names.postgres, "postgres", {
        Image: this.postgresImage,
        Env: [
          `POSTGRES_USER=${SUPERUSER}`,
          // Required by the image's contract to initialise; the superuser's
          // password is removed right after (see app-role-sql.ts), so this
          // value opens nothing.
          `POSTGRES_PASSWORD=${randomBytes(16).toString("hex")}`,
          `POSTGRES_DB=${names.database}`,
          `PGDATA=${PGDATA}`,
        ],
        StopSignal: "SIGINT",
        HostConfig: {
          Runtime: "runc",
          RestartPolicy: { Name: "unless-stopped" },
          Mounts: [{ Type: "volume", Source: names.volume, Target: PGDATA }],
          NetworkMode: privateNetworkId,
        },
      }));
    const container = this.docker.getContainer(info.Id);
    if (!isRunning(info)) await this.startContainer(container, names.postgres);
    return container;
  }

  private async ensurePgbouncerContainer(
    spec: DatabaseSpec,
    names: ProjectNames,
    existing: Docker.ContainerInspectInfo | undefined,
    appNetworkId: string,
    privateNetworkId: string,
  ): Promise<Docker.Container> {
    const appNetwork = this.appNetworkName(names);
    // A container that never ran has its networks recorded by name, without ids yet.
    const attachedTo = (info: Docker.ContainerInspectInfo, name: string, id: string): boolean =>
      info.HostConfig.NetworkMode === id ||
      Object.entries(info.NetworkSettings.Networks ?? {}).some(
        ([key, network]) => network.NetworkID === id || (!network.NetworkID && key === name),
      );
    const wantedBinding = this.publishHost;
    let info = existing;
    if (info) {
      const binding = info.HostConfig.PortBindings?.[PORT_KEY]?.[0]?.HostIp;
      if (info.Config.Image !== this.pgbouncerImage || binding !== wantedBinding || !attachedTo(info, appNetwork, appNetworkId)) {
        // PgBouncer holds no state: a container made under other settings is replaced.
        this.logger.info({ container: names.pgbouncer }, "PgBouncer container differs from the configuration; re-creating it");
        await this.call(`removing container ${names.pgbouncer}`, () =>
          this.docker.getContainer(names.pgbouncer).remove({ force: true }),
        );
        info = undefined;
      }
    }
    info ??= await this.createContainer(spec, names.pgbouncer, "pgbouncer", {
      Image: this.pgbouncerImage,
      User: PGBOUNCER_OS_USER,
      ExposedPorts: { [PORT_KEY]: {} },
      StopSignal: "SIGINT",
      HostConfig: {
        Runtime: "runc",
        RestartPolicy: { Name: "unless-stopped" },
        NetworkMode: appNetworkId,
        ...(wantedBinding ? { PortBindings: { [PORT_KEY]: [{ HostIp: wantedBinding, HostPort: "" }] } } : {}),
      },
    });
    if (!attachedTo(info, names.privateNetwork, privateNetworkId)) {
      const id = info.Id;
      await this.call(`connecting ${names.pgbouncer} to ${names.privateNetwork}`, async () => {
        try {
          await this.docker.getNetwork(privateNetworkId).connect({ Container: id });
        } catch (error) {
          // Already connected by a run that stopped right after.
          if (statusCodeOf(error) !== 403 && !isConflict(error)) throw error;
        }
      });
    }
    return this.docker.getContainer(info.Id);
  }

  private async createContainer(
    spec: DatabaseSpec,
    name: string,
    role: ObjectRole,
    options: Docker.ContainerCreateOptions,
  ): Promise<Docker.ContainerInspectInfo> {
    await this.call(`creating container ${name}`, async () => {
      try {
        await this.docker.createContainer({ ...options, name, Labels: projectLabels(spec, role, this.labels) });
        this.logger.info({ container: name, image: options.Image }, "container created");
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
    });
    // Whoever created it, it must be this project's now. A creator racing us
    // holds the name a moment before the container can be inspected.
    let info = await this.inspectContainer(name);
    for (let attempt = 0; !info && attempt < 20; attempt++) {
      await sleep(250);
      info = await this.inspectContainer(name);
    }
    if (!info) throw new RuntimeError("failed", `container ${name} disappeared right after it was created`);
    const problem = ownershipProblem("container", name, info.Config.Labels, spec, role);
    if (problem) throw new RuntimeError("conflict", problem);
    return info;
  }

  /** Starts the container; false when it was already running (started meanwhile by another process). */
  private async startContainer(container: Docker.Container, name: string): Promise<boolean> {
    return this.call(`starting container ${name}`, async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          await container.start();
          this.logger.info({ container: name }, "container started");
          return true;
        } catch (error) {
          if (statusCodeOf(error) === 304) return false;
          // A twin network made by a racing service process, about to be
          // removed by it (see docker-networks.ts): the engine resolves the
          // container's networks by name at start.
          if (attempt < 20 && /ambiguous/i.test(engineMessage(error))) {
            await sleep(250);
            continue;
          }
          throw error;
        }
      }
    });
  }

  /**
   * TCP on 127.0.0.1 inside the container: during its first start the image
   * initialises behind a server listening on the unix socket only, and the
   * real server is the one that listens on TCP.
   */
  private async postgresAccepts(container: Docker.Container): Promise<boolean> {
    const result = await this.tryExec(container, {
      cmd: ["pg_isready", "-q", "-h", "127.0.0.1", "-p", String(CONTAINER_PORT)],
      user: PG_OS_USER,
    });
    return result?.exitCode === 0;
  }

  /**
   * Returns the verifier PostgreSQL holds for the role. A second try covers a
   * database created meanwhile by another service process ensuring the same
   * project: it then only has to be found.
   */
  private async ensureAppRole(container: Docker.Container, names: ProjectNames, password: string): Promise<string> {
    try {
      return await this.ensureAppRoleOnce(container, names, password);
    } catch (error) {
      if (!(error instanceof RuntimeError) || error.reason !== "failed") throw error;
      return this.ensureAppRoleOnce(container, names, password);
    }
  }

  private async ensureAppRoleOnce(container: Docker.Container, names: ProjectNames, password: string): Promise<string> {
    const [state] = await this.superuserQuery(container, appStateQuery(names.role, names.database), "postgres");
    const plan = planAppRole(state, names.role, names.database, password);
    if (plan.statements.length > 0) {
      // Through stdin: the verifier never appears in a command line.
      const outcome = await this.exec(container, `setting up ${names.role}`, {
        cmd: ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "--dbname", superuserConninfo("postgres")],
        user: PG_OS_USER,
        env: [CONNECT_TIMEOUT_ENV],
        stdin: `${plan.statements.join("\n")}\n`,
      });
      if (outcome.exitCode !== 0) {
        throw new RuntimeError(
          "failed",
          `setting up role ${names.role} and database ${names.database} in ${names.postgres} failed${firstError(outcome.stderr)}`,
        );
      }
    }
    return plan.verifier;
  }

  private async pgbouncerFacts(spec: DatabaseSpec): Promise<PgbouncerImageFacts> {
    const image = await this.call(`inspecting image ${this.pgbouncerImage}`, () =>
      this.docker.getImage(this.pgbouncerImage).inspect(),
    );
    let facts = this.pgbouncerImageFacts.get(image.Id);
    if (!facts) {
      facts = this.probePgbouncerImage(spec).catch((error: unknown) => {
        this.pgbouncerImageFacts.delete(image.Id);
        throw error;
      });
      this.pgbouncerImageFacts.set(image.Id, facts);
    }
    return facts;
  }

  /**
   * A short-lived container of the image tells what the config written before
   * PgBouncer's first start depends on: its version (max_prepared_statements)
   * and the ids its files must belong to (it reads them as its own user).
   */
  private async probePgbouncerImage(spec: DatabaseSpec): Promise<PgbouncerImageFacts> {
    return this.call(`reading PgBouncer's version from ${this.pgbouncerImage}`, async () => {
      // AutoRemove: the engine removes it once it exits, even if this service does not live to.
      const container = await this.docker.createContainer({
        Image: this.pgbouncerImage,
        Entrypoint: ["/bin/sh", "-c", 'echo "ids $(id -u) $(id -g)"; exec pgbouncer --version'],
        Cmd: [],
        User: PGBOUNCER_OS_USER,
        Labels: projectLabels(spec, "probe", this.labels),
        HostConfig: { Runtime: "runc", NetworkMode: "none", AutoRemove: true },
      });
      const chunks: Buffer[] = [];
      try {
        const output = new PassThrough();
        output.on("data", (chunk: Buffer) => chunks.push(chunk));
        const stream = await container.attach({ stream: true, stdout: true, stderr: true });
        const ended = new Promise<void>((resolve) => {
          stream.once("end", resolve);
          stream.once("close", resolve);
          stream.once("error", () => resolve());
        });
        this.docker.modem.demuxStream(stream, output, output);
        await container.start();
        await Promise.race([ended, sleep(30_000)]);
      } catch (error) {
        await container.remove({ force: true }).catch(() => undefined);
        throw error;
      }
      const text = Buffer.concat(chunks).toString("utf8");
      const version = /PgBouncer (\d+\.\d+(?:\.\d+)?)/i.exec(text)?.[1];
      const ids = /^ids (\d+) (\d+)$/m.exec(text);
      if (!version || !ids) {
        throw new RuntimeError(
          "failed",
          `image ${this.pgbouncerImage} did not report a PgBouncer version and a "${PGBOUNCER_OS_USER}" user`,
        );
      }
      return { version, uid: Number(ids[1]), gid: Number(ids[2]) };
    });
  }

  /** pgbouncer.ini and the userlist, into the container with putArchive (no bind mounts). */
  private async writePgbouncerFiles(
    container: Docker.Container,
    names: ProjectNames,
    verifier: string,
    facts: PgbouncerImageFacts,
  ): Promise<void> {
    // 0600 and owned by PgBouncer's user: the userlist holds the role's verifier.
    const owner = { mode: 0o600, uid: facts.uid, gid: facts.gid };
    const archive = tarArchive([
      {
        name: PGBOUNCER_INI,
        ...owner,
        content: renderContainerPgbouncerIni({
          database: names.database,
          postgresHost: names.postgres,
          preparedStatementsSupported: supportsPreparedStatements(facts.version),
        }),
      },
      { name: PGBOUNCER_USERLIST, ...owner, content: renderUserlist([[names.role, verifier]]) },
    ]);
    await this.call(`writing PgBouncer's config into ${names.pgbouncer}`, () =>
      container.putArchive(archive, { path: PGBOUNCER_CONFIG_DIR }),
    );
  }

  private async startOrReloadPgbouncer(container: Docker.Container, names: ProjectNames): Promise<void> {
    const info = await this.inspectContainer(names.pgbouncer);
    if (!isRunning(info) && (await this.startContainer(container, names.pgbouncer))) return;
    // A PgBouncer started a moment ago (by a racing process) may not answer
    // its console yet; one that never does cannot be trusted to have read the
    // files, and is started afresh.
    for (let attempt = 0; attempt < 10; attempt++) {
      const reload = await this.tryExec(container, this.consoleExec("RELOAD"));
      if (reload?.exitCode === 0) return;
      await sleep(300);
    }
    this.logger.warn({ container: names.pgbouncer }, "PgBouncer did not reload; restarting it");
    await this.call(`restarting container ${names.pgbouncer}`, () => container.restart());
  }

  /** A real query as the app role through PgBouncer, from inside its container. */
  private async queryThroughPooler(
    container: Docker.Container,
    names: ProjectNames,
    password: string,
  ): Promise<CollectedExec> {
    const result = await this.tryExec(container, {
      cmd: [
        "psql",
        "-X",
        "-q",
        "-A",
        "-t",
        "-h",
        "127.0.0.1",
        "-p",
        String(CONTAINER_PORT),
        "-U",
        names.role,
        "-d",
        names.database,
        "-c",
        "SELECT current_setting('server_version')",
      ],
      user: PGBOUNCER_OS_USER,
      // The password reaches psql through the exec's environment, never argv.
      env: [`PGPASSWORD=${password}`, CONNECT_TIMEOUT_ENV, "PGAPPNAME=sota-db-ready"],
    });
    return result ?? { exitCode: -1, stdout: "", stderr: `${names.pgbouncer} is not running` };
  }

  private async poolerInfo(container: Docker.Container, version: string): Promise<PoolerInfo> {
    const config = new Map(
      (await this.consoleQuery(container, "SHOW CONFIG")).map((row) => [row["key"] ?? "", row["value"] ?? ""]),
    );
    const preparedStatementsSupported = config.has("max_prepared_statements");
    return {
      version,
      poolMode: config.get("pool_mode") ?? "",
      defaultPoolSize: Number(config.get("default_pool_size")),
      maxClientConn: Number(config.get("max_client_conn")),
      preparedStatementsSupported,
      maxPreparedStatements: preparedStatementsSupported ? Number(config.get("max_prepared_statements")) : 0,
    };
  }

  private appNetworkName(names: ProjectNames): string {
    return this.appNetwork === PER_PROJECT_NETWORK ? names.projectAppNetwork : this.appNetwork;
  }

  private endpointOf(target: RuntimeTarget, pgbouncer: Docker.ContainerInspectInfo): Endpoint {
    const names = projectNames(target);
    const network = this.appNetworkName(names);
    const published = pgbouncer.NetworkSettings.Ports?.[PORT_KEY]?.find((binding) => binding.HostPort);
    const host = this.publishHost === "0.0.0.0" ? "127.0.0.1" : this.publishHost;
    const loopback =
      published && host && isLoopbackHost(host) ? { host, port: Number(published.HostPort) } : undefined;
    return { host: names.pgbouncer, port: CONTAINER_PORT, network, ...(loopback ? { loopback } : {}) };
  }

  // ---- psql inside the containers ----

  private async superuserQuery(container: Docker.Container, sql: string, database: string): Promise<Rows> {
    const marker = nullMarker();
    const outcome = await this.exec(container, `running an admin query in ${database}`, {
      cmd: [
        ...["psql", "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1", "-P", `null=${marker}`, "--no-password"],
        ...["--dbname", superuserConninfo(database)],
      ],
      user: PG_OS_USER,
      env: [CONNECT_TIMEOUT_ENV],
      stdin: `${sql}\n`,
    });
    if (outcome.exitCode !== 0) {
      throw new RuntimeError("failed", `admin query in ${database} failed (psql exit code ${outcome.exitCode})${firstError(outcome.stderr)}`);
    }
    return parsePsqlCsv(outcome.stdout, marker);
  }

  private consoleExec(command: string, marker = nullMarker()): ExecSpec {
    return {
      cmd: [
        "psql",
        "-X",
        "-q",
        "--csv",
        "-P",
        `null=${marker}`,
        "-h",
        PGBOUNCER_SOCKET_DIR,
        "-p",
        String(CONTAINER_PORT),
        "-U",
        CONSOLE_USER,
        "-d",
        "pgbouncer",
      ],
      user: PGBOUNCER_OS_USER,
      env: [CONNECT_TIMEOUT_ENV],
      stdin: `${command}\n`,
    };
  }

  private async consoleQuery(container: Docker.Container, command: string): Promise<Rows> {
    const marker = nullMarker();
    const outcome = await this.exec(container, "running a PgBouncer console command", this.consoleExec(command, marker));
    if (outcome.exitCode !== 0) {
      throw new RuntimeError("failed", `PgBouncer console command failed (psql exit code ${outcome.exitCode})${firstError(outcome.stderr)}`);
    }
    return parsePsqlCsv(outcome.stdout, marker);
  }

  private async terminateSession(container: Docker.Container, applicationName: string): Promise<void> {
    await this.superuserQuery(
      container,
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '${applicationName}'`,
      "postgres",
    ).catch((error: unknown) => {
      this.logger.warn({ err: error }, "could not end a broken-off restore session");
    });
  }

  // ---- plumbing ----

  /** A running container of this project, or a clear error saying why not. */
  private async runningContainer(target: RuntimeTarget, name: string, role: ObjectRole): Promise<Docker.Container> {
    const info = await this.inspectContainer(name);
    if (!info) throw new RuntimeError("unavailable", `database ${target.slug} has no container ${name}; ensure it first`);
    const problem = ownershipProblem("container", name, info.Config.Labels, target, role);
    if (problem) throw new RuntimeError("conflict", problem);
    if (!isRunning(info)) {
      throw new RuntimeError("unavailable", `container ${name} is ${info.State.Status}; ensure the database first`);
    }
    return this.docker.getContainer(info.Id);
  }

  private exec(
    container: Docker.Container,
    what: string,
    spec: ExecSpec,
    options?: { readonly discardStdout?: boolean },
  ): Promise<CollectedExec> {
    return this.call(what, () => execCollect(this.docker, container, spec, options));
  }

  /** An exec that may find its container not (yet) running: undefined then. */
  private async tryExec(container: Docker.Container, spec: ExecSpec): Promise<CollectedExec | undefined> {
    try {
      return await execCollect(this.docker, container, spec);
    } catch (error) {
      const status = statusCodeOf(error);
      if (status === 409 || status === 404) return undefined;
      throw toRuntimeError(error, "running a command in a container", this.engine);
    }
  }

  /** Runs an engine call, turning its failure into a RuntimeError that says what was being done. */
  private async call<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw toRuntimeError(error, what, this.engine);
    }
  }

  /**
   * Polls `attempt` until it returns a value, the deadline passes (a "timeout"
   * naming what did not come up and the container's state) or the signal
   * aborts. Engine failures end the wait at once.
   */
  private async waitFor<T>(
    deadline: number,
    signal: AbortSignal | undefined,
    what: string,
    containerName: string,
    attempt: () => Promise<T | undefined>,
    lastProblem: () => string = () => "",
  ): Promise<T> {
    for (let round = 0; ; round++) {
      signal?.throwIfAborted();
      const value = await attempt();
      if (value !== undefined) return value;
      if (Date.now() >= deadline) {
        const info = await this.inspectContainer(containerName).catch(() => undefined);
        const state = info
          ? `${containerName} is ${info.State.Status}${info.State.Running ? "" : ` (exit code ${info.State.ExitCode})`}`
          : `${containerName} is missing`;
        throw new RuntimeError(
          "timeout",
          `${what} did not succeed within ${Math.round(this.readyTimeoutMs / 1000)}s; ${state}${lastProblem()}`,
        );
      }
      await sleep(Math.min(100 * 2 ** round, 1_000), undefined, signal ? { signal } : {});
    }
  }
}

function lastLine(stderr: string): string {
  const line = stderr.trim().split("\n").at(-1)?.trim();
  return line ? `: ${redactSecrets(line).slice(0, 300)}` : "";
}

function failedStream(error: unknown): Readable {
  const stream = new PassThrough();
  process.nextTick(() => stream.destroy(error instanceof Error ? error : new Error(String(error))));
  return stream;
}
