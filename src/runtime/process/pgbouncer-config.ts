// PgBouncer's config and userlist for one project. The pool settings are the
// product's (seed: transaction mode, 20 server connections, 100 clients).
import { POSTGRES_PORT } from "./postgres-settings.js";

/** Console user (admin_users) through which the service reads SHOW CONFIG and sends RELOAD. */
export const POOLER_ADMIN_USER = "sota_pooler_admin";

export const POOL_MODE = "transaction";
export const DEFAULT_POOL_SIZE = 20;
export const MAX_CLIENT_CONN = 100;
export const MAX_PREPARED_STATEMENTS = 100;

export interface PgbouncerConfigInput {
  readonly slug: string;
  readonly port: number;
  /** PostgreSQL's unix socket directory. */
  readonly socketDir: string;
  readonly userlistFile: string;
  readonly logFile: string;
  readonly pidFile: string;
  /** Only PgBouncer >= 1.21 knows max_prepared_statements; older ones refuse to start with it. */
  readonly preparedStatementsSupported: boolean;
}

export function renderPgbouncerIni(input: PgbouncerConfigInput): string {
  const settings: [string, string][] = [
    ["listen_addr", "127.0.0.1"],
    ["listen_port", String(input.port)],
    // Empty: no unix socket. The default (/tmp/.s.PGSQL.{port}) would make
    // every pooler on the machine compete for names in /tmp.
    ["unix_socket_dir", ""],
    // The userlist holds SCRAM verifiers identical to PostgreSQL's, so PgBouncer
    // checks the client's proof and passes it through to the server.
    ["auth_type", "scram-sha-256"],
    ["auth_file", input.userlistFile],
    ["admin_users", POOLER_ADMIN_USER],
    ["pool_mode", POOL_MODE],
    ["default_pool_size", String(DEFAULT_POOL_SIZE)],
    ["max_client_conn", String(MAX_CLIENT_CONN)],
    ...(input.preparedStatementsSupported
      ? ([["max_prepared_statements", String(MAX_PREPARED_STATEMENTS)]] as [string, string][])
      : []),
    // Drivers (JDBC, psycopg, node-postgres options) send these; PgBouncer would
    // otherwise refuse the connection.
    ["ignore_startup_parameters", "extra_float_digits,options"],
    // The server is local and supervised: after a restart, retry logins within
    // a second rather than the default 15.
    ["server_login_retry", "1"],
    ["logfile", input.logFile],
    ["pidfile", input.pidFile],
  ];
  return [
    "; Written by sota-db; edits are overwritten.",
    "[databases]",
    `${input.slug} = host=${connstringValue(input.socketDir)} port=${POSTGRES_PORT} dbname=${input.slug}`,
    "",
    "[pgbouncer]",
    ...settings.map(([key, value]) => `${key} = ${value}`),
    "",
  ].join("\n");
}

/** auth_file format: one `"user" "secret"` line each, double quotes doubled. */
export function renderUserlist(entries: ReadonlyArray<readonly [user: string, secret: string]>): string {
  return entries.map(([user, secret]) => `${quoted(user)} ${quoted(secret)}\n`).join("");
}

/** The secret recorded for `user` in an auth_file, if any. */
export function userlistSecret(userlist: string | undefined, user: string): string | undefined {
  for (const line of (userlist ?? "").split("\n")) {
    const match = /^"((?:[^"]|"")*)"\s+"((?:[^"]|"")*)"/.exec(line);
    if (match && match[1]?.replace(/""/g, '"') === user) return match[2]?.replace(/""/g, '"');
  }
  return undefined;
}

function quoted(value: string): string {
  return `"${value.replace(/"/g, '""')}"`;
}

/** PgBouncer connect strings take single-quoted values (paths with spaces). */
function connstringValue(value: string): string {
  return /^[A-Za-z0-9_./-]+$/.test(value) ? value : `'${value.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}
