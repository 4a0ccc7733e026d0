// node-postgres clients for the service's own sessions: the superuser and the
// app role over the instance's unix socket (see socket-sessions.ts for which
// does what), the pooler console and the app role over loopback.
import pg from "pg";
import type { Rows } from "../../runtime.js";
import { SUPERUSER_STARTUP_OPTIONS } from "../../shared/socket-sessions.js";
import { POSTGRES_PORT, SUPERUSER } from "../children/postgres-settings.js";


/** Every value as the text the server sent: the Runtime port returns strings. */
const TEXT_TYPES = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;
const CONNECT_TIMEOUT_MS = 5_000;
/** The least a connection attempt is given, even past a deadline: a server that is up answers well within it. */
const LAST_ATTEMPT_MS = 200;

/**
 * How long one connection attempt of a readiness wait may take: no longer
 * than what is left until `deadline` (a server that accepts the socket but
 * answers slowly, starved or stuck, must not stretch the wait past its
 * bound), and no longer than a usual connect.
 */
export function attemptTimeoutMs(deadline: number): number {
  return Math.min(CONNECT_TIMEOUT_MS, Math.max(LAST_ATTEMPT_MS, deadline - Date.now()));
}

/** search_path pinned to pg_catalog: no tenant setting reaches a superuser session. */
export function superuserClient(socketDir: string, database: string, connectTimeoutMs = CONNECT_TIMEOUT_MS): pg.Client {
  return socketClient(socketDir, SUPERUSER, database, SUPERUSER_STARTUP_OPTIONS, connectTimeoutMs);
}

/** The project's app role, without a password (`trust` on the private socket). */
export function appRoleSocketClient(socketDir: string, role: string, database: string): pg.Client {
  return socketClient(socketDir, role, database);
}

function socketClient(socketDir: string, user: string, database: string, options?: string, connectTimeoutMs = CONNECT_TIMEOUT_MS): pg.Client {
  return guarded(
    new pg.Client({
      host: socketDir,
      port: POSTGRES_PORT,
      user,
      database,
      types: TEXT_TYPES,
      connectionTimeoutMillis: connectTimeoutMs,
      application_name: "sota-db",
      ...(options === undefined ? {} : { options }),
    }),
  );
}

export function loopbackClient(port: number, user: string, password: string, database: string, connectTimeoutMs = CONNECT_TIMEOUT_MS): pg.Client {
  return guarded(
    new pg.Client({
      host: "127.0.0.1",
      port,
      user,
      password,
      database,
      types: TEXT_TYPES,
      connectionTimeoutMillis: connectTimeoutMs,
    }),
  );
}

/** Connects, runs one statement with the simple query protocol, disconnects. */
export async function queryOnce(client: pg.Client, sql: string): Promise<Rows> {
  try {
    await client.connect();
    return await queryRows(client, sql);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function queryRows(client: pg.Client, sql: string, values?: unknown[]): Promise<Rows> {
  const result = await client.query<Record<string, string | null>>(sql, values);
  // A multi-statement string yields one result per statement; the last one answers.
  const last = Array.isArray(result) ? (result as pg.QueryResult<Record<string, string | null>>[]).at(-1) : result;
  return last?.rows ?? [];
}

/**
 * An unhandled 'error' event (the server going away between queries) would
 * crash the service; failures surface through the next query instead.
 */
function guarded(client: pg.Client): pg.Client {
  client.on("error", () => undefined);
  return client;
}
