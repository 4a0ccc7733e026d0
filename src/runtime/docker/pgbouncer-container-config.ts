// PgBouncer's config inside its container. The pool settings and the userlist
// format are shared with the process driver; what differs is where PgBouncer
// listens (every interface of its container, port 5432) and where PostgreSQL
// is (the sota-db-{slug} container, by name, on the private network).
import { databaseEntries, poolSettings, renderIni } from "../shared/pgbouncer-settings.js";
import { CONTAINER_PORT } from "./docker-names.js";

export { renderUserlist, supportsPreparedStatements } from "../shared/pgbouncer-settings.js";

export const PGBOUNCER_CONFIG_DIR = "/etc/pgbouncer";
export const PGBOUNCER_INI = "pgbouncer.ini";
export const PGBOUNCER_USERLIST = "userlist.txt";
/**
 * The OS user PgBouncer runs as when its image names none (or root, which
 * PgBouncer refuses) and SOTA_PGBOUNCER_USER is unset: sota-db's own image has it.
 */
export const DEFAULT_PGBOUNCER_OS_USER = "pgbouncer";
/**
 * PgBouncer lets a client with its own uid log into its console as the
 * database user `pgbouncer` over its unix socket without a password, whatever
 * its OS user is called, so the driver holds no console secret: it runs psql
 * inside the container as the container's user (exec's default).
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
  return renderIni({
    header: "Written by sota-db into this container; edits are overwritten.",
    databases: databaseEntries(input.database, `host=${input.postgresHost} port=${CONTAINER_PORT} dbname=${input.database}`),
    settings: [
      ["listen_addr", "0.0.0.0"],
      ["listen_port", String(CONTAINER_PORT)],
      ["unix_socket_dir", PGBOUNCER_SOCKET_DIR],
      ...poolSettings({
        authFile: `${PGBOUNCER_CONFIG_DIR}/${PGBOUNCER_USERLIST}`,
        adminUser: CONSOLE_USER,
        preparedStatementsSupported: input.preparedStatementsSupported,
      }),
      // Re-resolve sota-db-{slug} quickly: a re-created container gets a new address.
      ["dns_max_ttl", "5"],
    ],
  });
}
