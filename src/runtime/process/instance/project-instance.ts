// One project's running pair, PostgreSQL and PgBouncer, and what the driver
// remembers of it between ensures.
import { rm } from "node:fs/promises";
import type { Logger } from "../../../log.js";
import type { DatabaseSpec, EnsureResult } from "../../runtime.js";
import { socketDirInside, type InstancePaths } from "./instance-paths.js";
import type { InstanceUsers } from "../host/instance-users.js";
import type { RunAs } from "../host/os-user.js";
import { PgbouncerServer } from "../children/pgbouncer-server.js";
import type { PoolerAdmin } from "./pooler-setup.js";
import type { PoolerSockets } from "../host/pooler-sockets.js";
import type { Binaries } from "../host/postgres-binaries.js";
import { PostgresServer, type PostgresServerOptions } from "../children/postgres-server.js";
import type { ClaimedWarmInstance } from "../reserves/warm-claim.js";
import type { CgroupHost, InstanceCgroup } from "../host/instance-cgroups.js";
import { effectiveLimits, type ResourceLimits } from "../../shared/resource-limits.js";
import { WalReceiver } from "../pitr/wal-receiver.js";

export interface Instance {
  readonly slug: string;
  readonly projectId: string;
  readonly paths: InstancePaths;
  /** The OS user its PostgreSQL and PgBouncer run as. */
  readonly runAs: RunAs;
  readonly logger: Logger;
  readonly postgres: PostgresServer;
  readonly pgbouncer: PgbouncerServer;
  /** Streams its WAL into its archive once the server is up (see wal-receiver.ts). */
  readonly wal: WalReceiver;
  /** PgBouncer's console credentials, once set up. */
  admin: PoolerAdmin | undefined;
  /** Both processes answered a real query since their last unexpected exit. */
  healthy: boolean;
  /** HMAC of the password last verified end to end: the fast path compares without keeping the password. */
  passwordDigest: Buffer | undefined;
  result: EnsureResult | undefined;
  /** Symlink at the old path of a warm instance's postmaster, until that process exits. */
  alias: string | undefined;
  /** Where its PostgreSQL (with every backend) and PgBouncer run, limited. */
  readonly cgroup: InstanceCgroup;
  /** The limits it runs with: the runtime's defaults under the project's override. */
  limits: ResourceLimits;
  /** Its cgroup's out-of-memory kill count when this service took it, and when last reported. */
  oomKillsBase: number;
  oomKillsSeen: number;
}

/** What every instance is run with. */
export interface InstanceHost {
  readonly binaries: Binaries;
  readonly users: InstanceUsers;
  readonly logger: Logger;
  /** Holds each pooler's listening socket for its database's life. */
  readonly poolerSockets: PoolerSockets;
  readonly cgroups: CgroupHost;
  /** Every database's limits unless its project overrides them. */
  readonly defaultLimits: ResourceLimits;
}

/** `warm`: a running warm PostgreSQL whose directory is now the project's. */
export function createInstance(
  host: InstanceHost,
  spec: DatabaseSpec,
  paths: InstancePaths,
  port: number,
  runAs: RunAs,
  warm?: ClaimedWarmInstance,
): Instance {
  const cgroup = host.cgroups.instance(spec.slug);
  const onSpawn = (pid: number): Promise<void> => cgroup.addProcess(pid);
  const postgresOptions = { ...postgresOptionsFor(host, spec.slug, paths, runAs), onSpawn };
  const { logger } = postgresOptions;
  warm?.postgres.relocate(postgresOptions);
  const postgres = warm?.postgres ?? new PostgresServer(postgresOptions);
  const pgbouncer = new PgbouncerServer({
    slug: spec.slug,
    binary: host.binaries.pgbouncer,
    runAs,
    dir: paths.dir,
    iniFile: paths.pgbouncerIni,
    pidFile: paths.pgbouncerPid,
    logFile: paths.pgbouncerLog,
    logger,
    port,
    sockets: host.poolerSockets,
    onSpawn,
  });
  const instance: Instance = {
    slug: spec.slug,
    projectId: spec.projectId,
    paths,
    runAs,
    logger,
    postgres,
    pgbouncer,
    wal: new WalReceiver({ slug: spec.slug, binary: host.binaries.postgres.pgReceivewal, runAs, paths, logger, onSpawn }),
    admin: undefined,
    healthy: false,
    passwordDigest: undefined,
    result: undefined,
    alias: warm?.alias,
    cgroup,
    limits: effectiveLimits(host.defaultLimits, spec.limits),
    oomKillsBase: 0,
    oomKillsSeen: 0,
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

function postgresOptionsFor(host: InstanceHost, slug: string, paths: InstancePaths, runAs: RunAs): PostgresServerOptions {
  return {
    name: slug,
    binaries: host.binaries.postgres,
    runAs,
    pgdata: paths.pgdata,
    configFile: paths.postgresConf,
    hbaFile: paths.hbaConf,
    socketDir: paths.socketDir,
    socketDirShared: !socketDirInside(paths),
    logFile: paths.postgresLog,
    logger: host.logger.child({ slug }),
  };
}

export async function stopInstance(instance: Instance): Promise<void> {
  instance.healthy = false;
  // The receiver first: it flushes what it has, rather than see its server go.
  await instance.wal.stop();
  // The pooler next: its SIGINT lets transactions in flight finish against a live server.
  await instance.pgbouncer.stop();
  await instance.postgres.stop();
  await dropAlias(instance);
  // Made again (with its limits) by the next ensure; still busy when a
  // tenant's own background process outlived the servers (removal ends those).
  await instance.cgroup.remove().catch(() => undefined);
}

async function dropAlias(instance: Instance): Promise<void> {
  const alias = instance.alias;
  if (alias === undefined) return;
  instance.alias = undefined;
  await rm(alias, { force: true }).catch(() => undefined);
}
