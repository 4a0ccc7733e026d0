// PgBouncer's config for one project's local pooler: on 127.0.0.1, in front
// of PostgreSQL's unix socket. The pool settings are shared with the Docker driver.
// No listen_addr: PgBouncer is handed the socket the service holds on
// 127.0.0.1 (see pgbouncer-server.ts) and binds nothing itself.
import { databaseEntries, poolSettings, renderIni } from "../../shared/pgbouncer-settings.js";
import { POSTGRES_PORT } from "./postgres-settings.js";

export { renderUserlist, userlistSecret } from "../../shared/pgbouncer-settings.js";

/** Console user (admin_users) through which the service reads SHOW CONFIG and sends RELOAD. */
export const POOLER_ADMIN_USER = "sota_pooler_admin";

export interface PgbouncerConfigInput {
  readonly slug: string;
  readonly port: number;
  /** PostgreSQL's unix socket directory. */
  readonly socketDir: string;
  readonly userlistFile: string;
  readonly logFile: string;
  readonly pidFile: string;
  /** max_prepared_statements on (PgBouncer >= 1.22, see supportsPreparedStatements); older ones refuse to start with it. */
  readonly preparedStatementsSupported: boolean;
}

export function renderPgbouncerIni(input: PgbouncerConfigInput): string {
  return renderIni({
    header: "Written by sota-db; edits are overwritten.",
    databases: databaseEntries(input.slug, `host=${connstringValue(input.socketDir)} port=${POSTGRES_PORT} dbname=${input.slug}`),
    settings: [
      // For SHOW CONFIG only: the socket it is handed decides where it listens.
      ["listen_port", String(input.port)],
      // Empty: no unix socket. The default (/tmp/.s.PGSQL.{port}) would make
      // every pooler on the machine compete for names in /tmp.
      ["unix_socket_dir", ""],
      ...poolSettings({ authFile: input.userlistFile, adminUser: POOLER_ADMIN_USER, preparedStatementsSupported: input.preparedStatementsSupported }),
      ["logfile", input.logFile],
      ["pidfile", input.pidFile],
    ],
  });
}

/** PgBouncer connect strings take single-quoted values (paths with spaces). */
function connstringValue(value: string): string {
  return /^[A-Za-z0-9_./-]+$/.test(value) ? value : `'${value.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}
