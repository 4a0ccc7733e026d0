// The PostgreSQL configuration of every instance. It lives in a file of the
// service outside the data directory (passed as config_file, so the service
// never writes inside a directory the child owns), includes the data
// directory's own postgresql.conf first, and is rewritten on each start, so
// tuning changes in a new release reach existing databases too.

/** The superuser the service connects as over the unix socket. */
export const SUPERUSER = "postgres";
/** The physical replication slot the WAL receiver streams through (see wal-receiver.ts). */
export const WAL_SLOT = "sota_wal";
/** The receiver's application_name, by which pg_stat_replication tells it apart. */
export const WAL_RECEIVER_NAME = "sota_wal_receiver";
/** Every instance listens on this port number; it only names the socket file. */
export const POSTGRES_PORT = 5432;
const HEADER = "# Written by sota-db on every start; edits are overwritten.";

/**
 * Tuned for many small, mostly idle databases on one machine rather than one
 * big server. Each setting's reason:
 * - listen_addresses '': unix socket only; apps reach PostgreSQL through PgBouncer.
 * - max_connections 33: the app role's limit (PgBouncer's transaction pool of
 *   20 and session pool of 5, plus 2 for the service's sessions as that role),
 *   room for the dump role, and superuser_reserved 3.
 * - shared_buffers 16MB (default 128MB): the page cache does the rest; small
 *   databases fit, and idle instances stay small.
 * - min_wal_size 32MB (two 16MB segments, the minimum), max_wal_size 256MB:
 *   little WAL kept on disk per database; checkpoints stay timed for small loads.
 * - wal_buffers 1MB, maintenance_work_mem 16MB, work_mem 4MB: small bounded memory.
 * - max_logical_replication_workers 0: no logical-replication launcher process
 *   per instance (the app role cannot create subscriptions anyway).
 * - max_parallel_workers_per_gather 0: many databases share few cores; parallel
 *   workers would only add bursts.
 * - jit off: JIT compilation costs memory and latency and pays off only on big
 *   analytical queries.
 * - fsync, synchronous_commit, full_page_writes stay on: durability is not traded away.
 * - wal_level replica (the default, said aloud: a tenant's ALTER SYSTEM to
 *   minimal would end continuous archiving); max_wal_senders 3: the WAL
 *   receiver, a base backup, and a restarted receiver while its old sender
 *   is still exiting; max_replication_slots 2: the receiver's slot and a spare.
 * - max_slot_wal_keep_size 1GB: the receiver's slot keeps WAL on the server
 *   until the archive has it, but never more than this. A receiver that stays
 *   dead (or a tenant who stops it) thus costs at most 1 GB more disk than
 *   the server keeps anyway (max_wal_size); past it the slot is lost, and the
 *   next receiver start opens a new WAL generation (the WAL in between is
 *   gone, and a new base backup is needed to recover past it). 1 GB rides out
 *   a bulk load while a receiver restarts (its backoff stays under 15 s) and
 *   is a small share of a host's disk; an idle database keeps nothing extra.
 * - log to stderr (the service hands it the instance's postgres.log),
 *   statements never logged, so no secret ends up there.
 */
export function renderPostgresSettings(socketDir: string): string {
  const settings: Record<string, string> = {
    listen_addresses: "''",
    port: String(POSTGRES_PORT),
    unix_socket_directories: quote(socketDir),
    unix_socket_permissions: "0700",
    max_connections: "33",
    superuser_reserved_connections: "3",
    shared_buffers: "16MB",
    work_mem: "4MB",
    maintenance_work_mem: "16MB",
    wal_buffers: "1MB",
    min_wal_size: "32MB",
    max_wal_size: "256MB",
    max_logical_replication_workers: "0",
    max_parallel_workers_per_gather: "0",
    jit: "off",
    fsync: "on",
    synchronous_commit: "on",
    full_page_writes: "on",
    wal_level: "replica",
    max_wal_senders: "3",
    max_replication_slots: "2",
    max_slot_wal_keep_size: "1GB",
    password_encryption: "'scram-sha-256'",
    logging_collector: "off",
    log_destination: "'stderr'",
    log_statement: "'none'",
    log_min_duration_statement: "-1",
  };
  const lines = Object.entries(settings).map(([key, value]) => `${key} = ${value}`);
  return `${HEADER}\n${lines.join("\n")}\n`;
}

export interface ConfigFiles {
  readonly pgdata: string;
  readonly socketDir: string;
  /** Where the service writes renderHba's output. */
  readonly hbaFile: string;
}

/**
 * The file passed as config_file: initdb's postgresql.conf of the data
 * directory first (locale, time zone; on databases of earlier releases it also
 * includes their old sota.conf), then the service's settings, which win. The
 * data directory's postgresql.auto.conf (ALTER SYSTEM) is read after it.
 */
export function renderPostgresConfig(files: ConfigFiles): string {
  const settings = renderPostgresSettings(files.socketDir).slice(HEADER.length + 1);
  return [HEADER, `include_if_exists = ${quote(`${files.pgdata}/postgresql.conf`)}`, `hba_file = ${quote(files.hbaFile)}`, settings].join("\n");
}

/**
 * Every role uses `trust` over the unix socket, the only way in (no TCP
 * listener): only root and the OS user running the instance can reach it
 * (its directory is 0700 and owned by that user), and either can already log
 * in there as the superuser. So a password on any other role would protect
 * nothing, while `trust` lets the service open sessions as the app role for
 * dumps, loads and checks (see socket-sessions.ts) without keeping the app's
 * password around. The app's own connections are checked by PgBouncer
 * (SCRAM-SHA-256 against its userlist) before they reach this socket. The
 * Docker images answer the same way: `local all all trust`.
 *
 * Replication connections (the WAL receiver, base backups) are allowed to the
 * superuser only, on the same socket: "all" does not cover them, and the app
 * role has no REPLICATION attribute anyway.
 */
export function renderHba(): string {
  return ["# Written by sota-db on every start; edits are overwritten.", "local all all trust", `local replication ${SUPERUSER} trust`, ""].join("\n");
}

function quote(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
