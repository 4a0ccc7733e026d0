// PgBouncer's config inside its container. The pool settings and the userlist
// format are shared with the process driver; what differs is where PgBouncer
// listens (every interface of its container, port 5432) and where PostgreSQL
// is (the sota-db-{slug} container, by name, on the private network).
import {
  DEFAULT_POOL_SIZE,
  MAX_CLIENT_CONN,
  MAX_PREPARED_STATEMENTS,
  POOL_MODE,
  renderUserlist,
} from "../process/pgbouncer-config.js";
import { CONTAINER_PORT } from "./docker-names.js";

export { renderUserlist };

export const PGBOUNCER_CONFIG_DIR = "/etc/pgbouncer";
export const PGBOUNCER_INI = "pgbouncer.ini";
export const PGBOUNCER_USERLIST = "userlist.txt";
/** The unprivileged OS user PgBouncer runs as in its container. */
export const PGBOUNCER_OS_USER = "pgbouncer";
/**
 * PgBouncer lets the OS user it runs as log into its console as `pgbouncer`
 * over its unix socket without a password, so the driver holds no console
 * secret: it runs psql inside the container as that user.
 */
export const CONSOLE_USER = "pgbouncer";
/** Container-local socket directory, used only for that console login. */
export const PGBOUNCER_SOCKET_DIR = "/tmp";

export interface PgbouncerContainerConfigInput {
  readonly database: string;
  readonly postgresHost: string;
  readonly preparedStatementsSupported: boolean;
}

export function renderContainerPgbouncerIni(input: PgbouncerContainerConfigInput): string {
  const settings: [string, string][] = [
    ["listen_addr", "0.0.0.0"],
    ["listen_port", String(CONTAINER_PORT)],
    ["unix_socket_dir", PGBOUNCER_SOCKET_DIR],
    // The userlist holds the role's SCRAM verifier exactly as PostgreSQL has
    // it, so PgBouncer checks the client's proof and passes it through.
    ["auth_type", "scram-sha-256"],
    ["auth_file", `${PGBOUNCER_CONFIG_DIR}/${PGBOUNCER_USERLIST}`],
    ["admin_users", CONSOLE_USER],
    ["pool_mode", POOL_MODE],
    ["default_pool_size", String(DEFAULT_POOL_SIZE)],
    ["max_client_conn", String(MAX_CLIENT_CONN)],
    ...(input.preparedStatementsSupported
      ? ([["max_prepared_statements", String(MAX_PREPARED_STATEMENTS)]] as [string, string][])
      : []),
    ["ignore_startup_parameters", "extra_float_digits,options"],
    // PostgreSQL restarts with its container; log in again within a second.
    ["server_login_retry", "1"],
    // Re-resolve sota-db-{slug} quickly: a re-created container gets a new address.
    ["dns_max_ttl", "5"],
  ];
  return [
    "; Written by sota-db into this container; edits are overwritten.",
    "[databases]",
    `${input.database} = host=${input.postgresHost} port=${CONTAINER_PORT} dbname=${input.database}`,
    "",
    "[pgbouncer]",
    ...settings.map(([key, value]) => `${key} = ${value}`),
    "",
  ].join("\n");
}

/** PgBouncer versions from 1.21 on know max_prepared_statements. */
export function supportsPreparedStatements(version: string): boolean {
  const match = /(\d+)\.(\d+)/.exec(version);
  if (!match) return false;
  const major = Number(match[1]);
  const minor = Number(match[2]);
  return major > 1 || (major === 1 && minor >= 21);
}
