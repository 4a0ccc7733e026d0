// Where one project's files live under the data dir.
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join, sep } from "node:path";
import { USER_RECORD } from "../host/instance-users.js";
import { POSTGRES_PORT } from "../children/postgres-settings.js";

export interface InstancePaths {
  readonly dir: string;
  readonly pgdata: string;
  /** Holds PostgreSQL's socket; see socketDirFor. */
  readonly socketDir: string;
  /** Written by the service (through a handle it opens) from PostgreSQL's stdout and stderr. */
  readonly postgresLog: string;
  /** PostgreSQL's config file (passed as config_file) and its pg_hba.conf: the service's, readable by the child. */
  readonly postgresConf: string;
  readonly hbaConf: string;
  /** The child's own directory for what PgBouncer writes itself: its log and pid file. */
  readonly pgbouncerDir: string;
  readonly pgbouncerIni: string;
  readonly pgbouncerUserlist: string;
  readonly pgbouncerLog: string;
  readonly pgbouncerPid: string;
  /** The pooler console's admin password, 0600: the service reads it, nothing logs it. */
  readonly poolerAdminPassword: string;
  /** The owning project's id: a slug never silently changes hands. */
  readonly projectMarker: string;
  /** Present while a new copy of the template may not be on disk yet (see data-dir.ts). */
  readonly unflushedMarker: string;
  /** Names the instance's OS user (see instance-users.ts). */
  readonly userRecord: string;
  /**
   * The WAL archive (see wal-archive.ts): the service's directory (0710),
   * holding one directory per WAL generation, each the instance's user's,
   * which its WAL receiver writes into.
   */
  readonly walDir: string;
  /** The service's file naming the current WAL generation. */
  readonly walGeneration: string;
  /** Written by the service from pg_receivewal's stdout and stderr. */
  readonly walReceiverLog: string;
  /** Present while a recovery replaces (or makes) the data directory (see recovery-leftovers.ts). */
  readonly recoveryMarker: string;
  /** Where a recovery builds and replays the new data directory, before it takes pgdata's place. */
  readonly pgdataRecovering: string;
  /** Where the data directory a recovery replaces waits, until the recovery has succeeded. */
  readonly pgdataBeforeRecovery: string;
  /** The config file of the server that replays WAL during a recovery. */
  readonly recoveryConf: string;
}

export function instancesRoot(dataDir: string): string {
  return join(dataDir, "instances");
}

/** Template clusters, one per PostgreSQL major (see template-cluster.ts). */
export function templatesRoot(dataDir: string): string {
  return join(dataDir, "templates");
}

/** Spare copies of the template, made ahead of time (see spare-copies.ts). */
export function sparesRoot(dataDir: string): string {
  return join(dataDir, "spares");
}

/** The warm pool's instances (see warm-pool.ts). */
export function warmRoot(dataDir: string): string {
  return join(dataDir, "warm");
}

export function instancePaths(dataDir: string, slug: string): InstancePaths {
  return instanceLayout(join(instancesRoot(dataDir), slug));
}

/**
 * The files of an instance relative to its directory. Warm instances and spare
 * copies use the same layout, so renaming one's directory makes it a project's.
 *
 * The directory itself is the service's (0710, group of the instance's OS
 * user): the child passes through it to its own directories (pgdata, the
 * socket's, PgBouncer's, each 0700) and reads its configs by name, but cannot
 * add, replace or remove an entry. So every path the service opens here, as
 * root, is one no child can redirect.
 */
export function instanceLayout(dir: string): InstancePaths {
  const pgbouncerDir = join(dir, "pgbouncer");
  return {
    dir,
    pgdata: join(dir, "pgdata"),
    socketDir: socketDirFor(dir),
    postgresLog: join(dir, "postgres.log"),
    postgresConf: join(dir, "postgresql.conf"),
    hbaConf: join(dir, "pg_hba.conf"),
    pgbouncerDir,
    pgbouncerIni: join(dir, "pgbouncer.ini"),
    pgbouncerUserlist: join(dir, "userlist.txt"),
    pgbouncerLog: join(pgbouncerDir, "pgbouncer.log"),
    pgbouncerPid: join(pgbouncerDir, "pgbouncer.pid"),
    poolerAdminPassword: join(dir, "pooler-admin.password"),
    projectMarker: join(dir, "project-id"),
    unflushedMarker: join(dir, "pgdata.unflushed"),
    userRecord: join(dir, USER_RECORD),
    walDir: join(dir, "wal"),
    walGeneration: join(dir, "wal-generation"),
    walReceiverLog: join(dir, "wal-receiver.log"),
    recoveryMarker: join(dir, "recovery-in-progress"),
    pgdataRecovering: join(dir, "pgdata.recovering"),
    pgdataBeforeRecovery: join(dir, "pgdata.before-recovery"),
    recoveryConf: join(dir, "postgresql.recovery.conf"),
  };
}

/** sockaddr_un.sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

/**
 * `{dir}/run` when the socket path fits a unix socket address, else a short
 * directory under the OS temp dir named by a hash of `dir` (stable across
 * restarts, distinct per instance).
 */
export function socketDirFor(dir: string): string {
  const inside = join(dir, "run");
  if (Buffer.byteLength(join(inside, `.s.PGSQL.${POSTGRES_PORT}`)) <= MAX_SOCKET_PATH) return inside;
  const hash = createHash("sha256").update(dir).digest("hex").slice(0, 16);
  return join(tmpdir(), `sota-pg-${hash}`);
}

/** The socket travels with the instance's directory only when it lies inside it (see socketDirFor). */
export function socketDirInside(paths: InstancePaths): boolean {
  return paths.socketDir.startsWith(paths.dir + sep);
}
