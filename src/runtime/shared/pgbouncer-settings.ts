// What every PgBouncer sota-db runs has in common, whichever driver runs it:
// the product's pool settings (as the product spec sets them: transaction mode, 20 server connections,
// 100 clients), the session pool next to it, the reset that keeps one client's
// session state from the next, SCRAM pass-through, the userlist format, and
// which versions get max_prepared_statements. Drivers add only where PgBouncer
// listens and where PostgreSQL is.

export const POOL_MODE = "transaction";
export const DEFAULT_POOL_SIZE = 20;
/**
 * Server connections of the session pool ({slug}_session): one per migration,
 * pg_dump, psql restore or LISTEN-ing worker at a time, which is few. Both pools
 * share PostgreSQL's max_connections (33 in the process runtime): 20 + 5 = 25
 * leaves room for the service's own sessions (readiness checks, pg_dump,
 * restores) and superuser_reserved_connections 3. max_db_connections holds the
 * session database to 5 whichever user logs in.
 */
export const SESSION_POOL_SIZE = 5;
/**
 * Sent on every server connection PgBouncer takes back from a client: after
 * each transaction in the transaction pool (server_reset_query_always), and when
 * a client of the session pool disconnects. Without it a `SET search_path`,
 * `set_config(..., false)` (as in every pg_dump), SET ROLE, a temp table, an
 * advisory lock, LISTEN or a SQL PREPARE stays on the server connection and the
 * next client of the pool inherits it. Its cost is one statement on the server
 * connection after each transaction, before that connection serves the next one.
 */
export const SERVER_RESET_QUERY = "DISCARD ALL";

/** The name of the session pool's database entry. Slugs never contain '_', so it meets no other slug. */
export function sessionDatabase(slug: string): string {
  return `${slug}_session`;
}
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
    ["server_reset_query", SERVER_RESET_QUERY],
    // Transaction pooling too: see SERVER_RESET_QUERY. From 1.22 PgBouncer
    // notices DISCARD ALL and forgets the server's prepared statements (it
    // prepares them again on next use); 1.21 does not, so it gets no
    // max_prepared_statements (see supportsPreparedStatements).
    ["server_reset_query_always", "1"],
    // PostgreSQL restarts under supervision (or with its container): log in
    // again within a second rather than the default 15.
    ["server_login_retry", "1"],
  ];
}

/**
 * The two database entries of a project's PgBouncer, both to the same
 * PostgreSQL database as the same user: `{slug}` in transaction mode (the
 * DATABASE_URL, the product spec's pool) and `{slug}_session` in session mode,
 * for what transaction pooling breaks (advisory-lock migrations, LISTEN,
 * prepared statements before PgBouncer 1.22, pg_dump and psql restores).
 */
export function databaseEntries(slug: string, connstring: string): Setting[] {
  return [
    [slug, connstring],
    [sessionDatabase(slug), `${connstring} pool_mode=session pool_size=${SESSION_POOL_SIZE} max_db_connections=${SESSION_POOL_SIZE}`],
  ];
}

export function renderIni(input: { header: string; databases: readonly Setting[]; settings: readonly Setting[] }): string {
  return [
    `; ${input.header}`,
    "[databases]",
    ...input.databases.map(([name, connstring]) => `${name} = ${connstring}`),
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

/**
 * Whether sota-db turns on max_prepared_statements ("1.24.1" → true). PgBouncer
 * tracks protocol-level prepared statements from 1.21, but only from 1.22 does
 * it notice the server_reset_query's DISCARD ALL dropping them; 1.21 would then
 * send clients to statements that are gone. So 1.21 is treated like 1.20: no
 * tracking, prepared statements go through the session URL.
 */
export function supportsPreparedStatements(version: string): boolean {
  const match = /(\d+)\.(\d+)/.exec(version);
  if (!match) return false;
  const major = Number(match[1]);
  const minor = Number(match[2]);
  return major > 1 || (major === 1 && minor >= 22);
}

function quoted(value: string): string {
  return `"${value.replace(/"/g, '""')}"`;
}
