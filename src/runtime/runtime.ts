// The Runtime port: what the service needs from whatever hosts a project's
// PostgreSQL and PgBouncer. Two drivers implement it with the same behaviour
// (checked by one shared contract suite): `process` (local child processes,
// the embedded default) and `docker` (containers through dockerode).
import type { Readable } from "node:stream";
import { DomainError, type ErrorKind } from "../errors.js";
import type { LimitsStatus, ResourceLimits } from "./shared/resource-limits.js";

export type { LimitsMechanism, LimitsStatus, ResourceLimits } from "./shared/resource-limits.js";

/** Identifies one project's database inside a runtime. */
export interface RuntimeTarget {
  /** The project's UUID, recorded as a label or marker on what is created. */
  readonly projectId: string;
  /** Validated slug: names the database, the role app_{slug} and the containers. */
  readonly slug: string;
}

/** Rows of a query, as both drivers return them: every value as PostgreSQL's text, NULL as null. */
export type Rows = Record<string, string | null>[];

/** Everything a runtime needs to create or re-create a project's database. */
export interface DatabaseSpec extends RuntimeTarget {
  /** The app role's password: 32 hex characters. Never logged. */
  readonly password: string;
  /** The project's override of the runtime's default limits, field by field. */
  readonly limits?: Partial<ResourceLimits>;
  /**
   * The database was provisioned before: its data must be there. A data
   * directory or volume that is gone is RuntimeError "lost" (data_loss), never
   * a fresh empty database under the old URL; a restore brings it back.
   */
  readonly mustExist?: boolean;
  /**
   * The endpoint port the database had (disaster recovery on a new host: the
   * same DATABASE_URL). A driver that allocates ports takes this one when it
   * is in its range and free, else another (and logs it); a driver whose
   * port follows from the slug ignores it. A database that already has a
   * port keeps it.
   */
  readonly port?: number;
}

/** The pooler's settings as they really are in the running PgBouncer. */
export interface PoolerInfo {
  readonly version: string;
  readonly poolMode: string;
  readonly defaultPoolSize: number;
  readonly maxClientConn: number;
  readonly preparedStatementsSupported: boolean;
  /** 0 where sota-db leaves max_prepared_statements off (PgBouncer before 1.22, see supportsPreparedStatements). */
  readonly maxPreparedStatements: number;
}

/** Where apps reach the database: the pooler, never PostgreSQL directly. */
export interface Endpoint {
  /** Host in DATABASE_URL: 127.0.0.1 (process) or sota-pgbouncer-{slug} (docker). */
  readonly host: string;
  readonly port: number;
  /** Network an app container must join to reach host:port (docker only). */
  readonly network?: string;
  /**
   * A loopback host:port through which this machine (tests, the service's own
   * checks) reaches the pooler, when one exists (process driver always; docker
   * only when publishing on 127.0.0.1 is configured).
   */
  readonly loopback?: { readonly host: string; readonly port: number };
}

export interface EnsureResult {
  readonly endpoint: Endpoint;
  /** server_version as PostgreSQL reports it, e.g. "17.2" or "15.18 (Debian ...)". */
  readonly postgresVersion: string;
  readonly pooler: PoolerInfo;
}

export type InstanceState = "running" | "stopped" | "missing";

export interface RuntimeStatus {
  readonly state: InstanceState;
  readonly endpoint?: Endpoint;
}

export interface RemoveOptions {
  /** Keep the data directory / volume so a later ensure brings the data back. */
  readonly keepData: boolean;
}

export interface Runtime {
  /** "process" or "docker": reported in the API. */
  readonly kind: string;

  /**
   * Idempotent and safe to call again after a crash half way: creates what is
   * missing, starts what is stopped, sets the app role's password to the one in
   * the spec, and returns only once a real query through the pooler succeeds
   * (bounded by the runtime's configured timeout; on timeout it rejects with a
   * RuntimeError naming what did not come up). Never returns the password.
   */
  ensure(spec: DatabaseSpec, signal?: AbortSignal): Promise<EnsureResult>;

  status(target: RuntimeTarget): Promise<RuntimeStatus>;

  /**
   * `pg_dump` of the project's database as plain SQL, streamed (never buffered
   * whole), never as the superuser: as the dump role (see dump-role.ts), which
   * has the app role's privileges and reads past its row security, so nothing
   * in the database runs with more privilege than the tenant's. The stream
   * errors if pg_dump exits non-zero.
   */
  dump(target: RuntimeTarget): Readable;

  /**
   * Runs plain SQL (as produced by `dump`, or by a superuser pg_dump of older
   * releases) against a database of the project's server, streamed, stopping
   * at the first error (ON_ERROR_STOP), in a session whose session user is the
   * app role: tenant SQL that fires while it loads (constraints, defaults,
   * index expressions...) runs as the tenant. `database` defaults to the
   * project's own database; other names are scratch databases the caller
   * created with `adminQuery`, owned by the app role (restore-by-swap, verification).
   */
  restore(target: RuntimeTarget, sql: Readable, database?: string): Promise<void>;

  /**
   * Runs one SQL statement as the server's superuser and returns the rows, with
   * search_path pinned to pg_catalog whatever the database or role settings.
   * For the service's own maintenance (scratch databases, terminating
   * sessions), never for user input. The service uses only the default
   * database, "postgres", which no tenant owns; looking inside a tenant's
   * database is `appQuery`'s job (tests may pass another database to inspect).
   */
  adminQuery(target: RuntimeTarget, sql: string, database?: string): Promise<Rows>;

  /**
   * Runs one SQL statement as the project's app role in one of its databases
   * (default: its own) and returns the rows: the service's checks inside a
   * database a tenant wrote, with no more privilege than the tenant has.
   */
  appQuery(target: RuntimeTarget, sql: string, database?: string): Promise<Rows>;

  /**
   * Runs one command on PgBouncer's admin console (SHOW CONFIG, PAUSE {db},
   * RESUME {db}, RELOAD ...) and returns the rows it answers with.
   */
  poolerCommand(target: RuntimeTarget, command: string): Promise<Rows>;

  remove(target: RuntimeTarget, options: RemoveOptions): Promise<void>;

  /** Throws a RuntimeError when the runtime cannot work (binaries, engine). */
  ping(): Promise<void>;

  /**
   * Databases whose pooler port another process held when the driver last
   * tried to take it: not ready, whatever the store says (process driver; a
   * driver that does not bind host ports leaves it out).
   */
  lostPoolerPorts?(): readonly LostPoolerPort[];

  /** The database's limits as enforced (or not) on this host, and its out-of-memory kills. */
  limitsStatus?(target: RuntimeTarget): Promise<LimitsStatus>;

  /** Out-of-memory kills seen per database this service runs (only those with at least one). */
  outOfMemoryKills?(): readonly OutOfMemoryKills[];

  /**
   * Continuous archiving and point-in-time recovery (see PointInTimeRecovery);
   * absent: the driver cannot do it yet, and the service says so.
   */
  readonly pitr?: PointInTimeRecovery;

  /** Stops what this process started (process driver); leaves containers running. */
  close(): Promise<void>;
}

/**
 * WAL of one database, streamed by pg_receivewal beside it since a given
 * moment. A recovery starts a new timeline, and a new generation of the
 * archive with it: a receiver cannot carry on into a directory whose newest
 * segment belongs to the timeline that was left. Each base backup belongs to
 * the generation that was current when it was taken; old generations stay
 * until no kept base backup needs them.
 */
export interface WalGeneration {
  /** Sortable, path-safe (e.g. "20261130T120000Z"); names the archive. */
  readonly id: string;
  /** Whether pg_receivewal is streaming into it right now (only the current generation can be). */
  readonly streaming: boolean;
  /** When WAL last reached the archive; null while it is empty. */
  readonly lastReceivedAt: Date | null;
  /** Bytes of WAL the generation holds on this host. */
  readonly bytes: number;
  /** Its WAL segment files, oldest first; the last may be partial (still being written). */
  readonly segments: readonly WalSegment[];
}

export interface WalSegment {
  /** The segment's file name as PostgreSQL names it (24 hex digits; a timeline history file: "{8 hex}.history"). */
  readonly name: string;
  readonly bytes: number;
  /** False for the segment pg_receivewal is still writing (".partial" on disk). */
  readonly complete: boolean;
}

/** What a base backup stream is, once it has ended. */
export interface BaseBackupInfo {
  /** The WAL generation it belongs to. */
  readonly generation: string;
  /** The first WAL segment a recovery from it needs (older ones may be pruned once no other backup needs them). */
  readonly startSegment: string;
}

export interface RecoveryTarget {
  /**
   * The database whose archive holds the WAL, and whose base backup `base`
   * is: the spec's own for a restore, another project's for CloneDatabase
   * (the service has checked the caller may read it).
   */
  readonly source: RuntimeTarget;
  /** The generation whose WAL is replayed: the one the base backup belongs to. */
  readonly generation: string;
  /** Replay up to this second (commits after it are left out); absent: everything archived. */
  readonly time?: Date;
  /**
   * Where the generation's WAL comes from instead of `source`'s archive on
   * this host: another host's copy (disaster recovery from object storage).
   * `source` still names whose data it is.
   */
  readonly wal?: WalSource;
}

/**
 * WAL files of one generation from somewhere other than this host's archive.
 * The driver takes, as from its own archive, the history files and the
 * segments from the base backup's start segment on, each under `name` in the
 * new data directory's pg_wal (a segment that was still being written goes
 * in under its complete name, as the local one does). A stream that errors
 * fails the recovery with that error's kind (a damaged copy: data_loss), and
 * the recovery is undone as any failed one is. The bytes come from a place
 * root does not trust more than the tenant's own archive: the driver writes
 * them only as the database's OS user.
 */
export interface WalSource {
  /** The generation's WAL files, oldest first; a name appears once (24 hex digits, or "{8 hex}.history"). */
  files(): Promise<readonly { readonly name: string; readonly complete: boolean }[]>;
  /** The file's whole content as it goes into pg_wal (a partial segment padded back to its full size). */
  open(name: string): Promise<Readable>;
}

/**
 * Point-in-time recovery, built on PostgreSQL's own tools: pg_receivewal
 * streams each database's WAL into an archive beside it (started by ensure,
 * supervised like the server), pg_basebackup takes base backups, and a
 * recovery replays a base backup plus archived WAL up to a second. The
 * archive never holds more than the WAL itself: an idle database costs almost
 * no disk.
 */
export interface PointInTimeRecovery {
  /**
   * A base backup of the whole server (pg_basebackup, tar format, WAL fetched
   * into it so it is consistent on its own), streamed; `info` resolves when it
   * ended, and the stream errors if pg_basebackup exits non-zero. Never run as
   * a role a tenant can use.
   */
  baseBackup(target: RuntimeTarget): { readonly stream: Readable; readonly info: Promise<BaseBackupInfo> };

  /** The database's WAL archive, oldest generation first (empty when it has none). */
  walGenerations(target: RuntimeTarget): Promise<WalGeneration[]>;

  /**
   * Makes sure everything committed before the call is in the archive: writes
   * a commit of its own and waits until the receiver has flushed it (bounded;
   * RuntimeError "timeout" when the receiver does not keep up). Resolves with
   * the time of that commit. A point-in-time restore calls it first, so a
   * target time between the last commit and now has a commit after it.
   */
  flushWal(target: RuntimeTarget): Promise<Date>;

  /** One archived WAL file, streamed (for off-host copies). */
  readWal(target: RuntimeTarget, generation: string, name: string): Readable;

  /**
   * Replaces the database's whole server with `base` (a baseBackup stream)
   * replayed up to `recovery`, and starts it as the primary of a new timeline
   * with a new, empty WAL generation (whose id it resolves with), behind the
   * same endpoint, with the spec's password. The server it replaces is moved
   * aside first and put back if the recovery fails, so a failed recovery
   * changes nothing. A clone (recovery.source another project) makes a new
   * database this way: its own role password is set from the spec, the
   * source is only read.
   */
  recover(spec: DatabaseSpec, base: Readable, recovery: RecoveryTarget, signal?: AbortSignal): Promise<{ readonly generation: string; readonly result: EnsureResult }>;

  /** Removes WAL no kept base backup needs: whole generations not in `keep`, and segments of kept ones older than their start segment. */
  pruneWal(target: RuntimeTarget, keep: ReadonlyMap<string, string>): Promise<void>;
}

export interface OutOfMemoryKills {
  readonly projectId: string;
  readonly kills: number;
}

export interface LostPoolerPort {
  readonly slug: string;
  readonly port: number;
}

/** Why a runtime operation failed; `reason` is safe to show to callers. */
export type RuntimeErrorReason = "unavailable" | "timeout" | "conflict" | "failed" | "lost";

/** What each reason tells the caller: a conflict (a name held by something else) is theirs to resolve, not a crash of ours. */
const KIND_OF_REASON: Record<RuntimeErrorReason, ErrorKind> = {
  unavailable: "unavailable",
  timeout: "deadline_exceeded",
  conflict: "failed_precondition",
  failed: "internal",
  lost: "data_loss",
};

/** The message of a database whose data is gone from the host (DatabaseSpec.mustExist). */
export function dataLost(slug: string, what: string): RuntimeError {
  return new RuntimeError(
    "lost",
    `the data of database "${slug}" is gone (${what}); it is not recreated empty under its old URL: restore it with RestoreBackup (a point-in-time restore brings back everything streamed)`,
  );
}

/**
 * A runtime failure whose message is safe to log and to return to callers:
 * drivers never put a password, a DATABASE_URL or raw process output that
 * could hold one into it.
 */
export class RuntimeError extends DomainError {
  override readonly name = "RuntimeError";
  constructor(
    readonly reason: RuntimeErrorReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(KIND_OF_REASON[reason], message, options);
  }
}
