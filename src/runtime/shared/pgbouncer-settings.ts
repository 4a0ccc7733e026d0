// What every PgBouncer sota-db runs has in common, whichever driver runs it:
// the product's pool settings (as the product spec sets them: transaction mode, 20 server connections,
// 100 clients), SCRAM pass-through, the userlist format, and which versions
// know max_prepared_statements. Drivers add only where PgBouncer listens and
// where PostgreSQL is.

export const POOL_MODE = "transaction";
export const DEFAULT_POOL_SIZE = 20;
export const MAX_CLIENT_CONN = 100;
export const MAX_PREPARED_STATEMENTS = 100;
/**
 * Seconds a client may take from connecting to being logged in. Every client
 * in its login phase holds one of max_client_conn's slots, so PgBouncer's 60 s
 * default let sockets that never authenticate lock the app out for a minute.
 * A real login (SCRAM, then the first server connection's welcome) takes
 * milliseconds here; 5 s still covers PostgreSQL coming back from a restart
 * under supervision (server_login_retry 1 s), and a client dropped meanwhile
 * retries as it would after any refused connection.
 */
export const CLIENT_LOGIN_TIMEOUT_S = 5;

export type Setting = readonly [key: string, value: string];

/** The pool and auth settings of every sota-db PgBouncer. */
export function poolSettings(options: { authFile: string; adminUser: string; preparedStatementsSupported: boolean }): Setting[] {
  return [
    // The userlist holds SCRAM verifiers identical to PostgreSQL's, so PgBouncer
    // checks the client's proof and passes it through to the server.
    ["auth_type", "scram-sha-256"],
    ["auth_file", options.authFile],
    ["admin_users", options.adminUser],
    ["pool_mode", POOL_MODE],
    ["default_pool_size", String(DEFAULT_POOL_SIZE)],
    ["max_client_conn", String(MAX_CLIENT_CONN)],
    ["client_login_timeout", String(CLIENT_LOGIN_TIMEOUT_S)],
    // Only PgBouncer >= 1.21 knows it; older ones refuse to start with it.
    ...(options.preparedStatementsSupported ? [["max_prepared_statements", String(MAX_PREPARED_STATEMENTS)] as const] : []),
    // Drivers (JDBC, psycopg, node-postgres options) send these; PgBouncer would
    // otherwise refuse the connection.
    ["ignore_startup_parameters", "extra_float_digits,options"],
    // PostgreSQL restarts under supervision (or with its container): log in
    // again within a second rather than the default 15.
    ["server_login_retry", "1"],
  ];
}

export function renderIni(input: { header: string; database: string; connstring: string; settings: readonly Setting[] }): string {
  return [
    `; ${input.header}`,
    "[databases]",
    `${input.database} = ${input.connstring}`,
    "",
    "[pgbouncer]",
    ...input.settings.map(([key, value]) => `${key} = ${value}`),
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

/** PgBouncer versions from 1.21 on track protocol-level prepared statements ("1.24.1" → true). */
export function supportsPreparedStatements(version: string): boolean {
  const match = /(\d+)\.(\d+)/.exec(version);
  if (!match) return false;
  const major = Number(match[1]);
  const minor = Number(match[2]);
  return major > 1 || (major === 1 && minor >= 21);
}

function quoted(value: string): string {
  return `"${value.replace(/"/g, '""')}"`;
}
