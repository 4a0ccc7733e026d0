// The SQL that brings a fresh or existing PostgreSQL container to the wanted
// state: role app_{slug} (LOGIN, no privileges) with the spec's password as a
// SCRAM verifier computed here, database {slug} owned by it, and no password
// on the superuser (it is reached only through the container's unix socket).
import pg from "pg";
import {
  APP_ROLE_CONNECTION_LIMIT,
  createDatabaseSql,
  createRoleSql,
  PRIVILEGE_COLUMNS,
  resetRoleSql,
  setOwnerSql,
  setVerifierSql,
  verifierToHold,
} from "../shared/app-role.js";
import { socketConninfo, SUPERUSER_STARTUP_OPTIONS } from "../shared/socket-sessions.js";
import { CONTAINER_PORT } from "./docker-names.js";

/** The superuser the official image creates (POSTGRES_USER), reached over its unix socket. */
export const SUPERUSER = "postgres";
/** Where both images' PostgreSQL puts its unix socket. */
export const POSTGRES_SOCKET_DIR = "/var/run/postgresql";

/** One query answering everything the plan needs; rows come back as text. */
export function appStateQuery(role: string, database: string): string {
  const roleLiteral = pg.escapeLiteral(role);
  const databaseLiteral = pg.escapeLiteral(database);
  const superuserLiteral = pg.escapeLiteral(SUPERUSER);
  return `SELECT
  (SELECT count(*) FROM pg_authid WHERE rolname = ${roleLiteral})::text AS role_exists,
  (SELECT rolpassword FROM pg_authid WHERE rolname = ${roleLiteral}) AS role_password,
  (SELECT (${PRIVILEGE_COLUMNS.join(" OR ")} OR NOT rolcanlogin OR rolconnlimit <> ${APP_ROLE_CONNECTION_LIMIT})::text
     FROM pg_authid WHERE rolname = ${roleLiteral}) AS role_needs_reset,
  (SELECT count(*) FROM pg_database WHERE datname = ${databaseLiteral})::text AS database_exists,
  (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = ${databaseLiteral}) AS database_owner,
  (SELECT (rolpassword IS NOT NULL)::text FROM pg_authid WHERE rolname = ${superuserLiteral}) AS superuser_has_password;
`;
}

/** What appStateQuery answers for a cluster fresh from the template (made without a password on the superuser). */
export const TEMPLATE_STATE: Readonly<Record<string, string | null>> = {
  role_exists: "0",
  role_password: null,
  role_needs_reset: null,
  database_exists: "0",
  database_owner: null,
  superuser_has_password: "false",
};

export interface AppPlan {
  /** Statements to run, one per line, each on its own (CREATE DATABASE cannot run in a transaction). */
  readonly statements: readonly string[];
  /** The verifier PostgreSQL holds once the statements ran: PgBouncer's userlist needs exactly it. */
  readonly verifier: string;
}

/**
 * What to change, given the state `appStateQuery` returned. Empty when nothing
 * is to be done. `proposed`, a verifier of the same password, is the one set
 * when PostgreSQL holds none that matches: PgBouncer may already have it.
 */
export function planAppRole(
  state: Record<string, string | null> | undefined,
  role: string,
  database: string,
  password: string,
  proposed?: string,
): AppPlan {
  const statements: string[] = [];
  if (state?.["role_exists"] !== "1") {
    // Tolerates a role created meanwhile by another service process.
    statements.push(`DO $sota$ BEGIN ${createRoleSql(role)}; EXCEPTION WHEN duplicate_object THEN NULL; END $sota$;`);
  } else if (state["role_needs_reset"] === "true") {
    statements.push(`${resetRoleSql(role)};`);
  }
  const current = state?.["role_password"] ?? null;
  const verifier = verifierToHold(password, current, proposed);
  if (verifier !== current) statements.push(`${setVerifierSql(role, verifier)};`);
  if (state?.["database_exists"] !== "1") {
    statements.push(`${createDatabaseSql(database, role)};`);
  } else if (state["database_owner"] !== role) {
    statements.push(`${setOwnerSql(database, role)};`);
  }
  // The official image's contract needs POSTGRES_PASSWORD to initialise; the
  // driver gives it a throwaway value and then takes the password away, so the
  // superuser cannot log in over the network at all.
  if (state?.["superuser_has_password"] === "true") {
    statements.push(`ALTER ROLE ${pg.escapeIdentifier(SUPERUSER)} PASSWORD NULL;`);
  }
  return { statements, verifier };
}

/**
 * libpq conninfo for the superuser over the container's socket, search_path
 * pinned (see socket-sessions.ts); values quoted, so any name is literal.
 */
export function superuserConninfo(database: string): string {
  return socketConninfo(POSTGRES_SOCKET_DIR, CONTAINER_PORT, SUPERUSER, database, SUPERUSER_STARTUP_OPTIONS);
}

/**
 * libpq conninfo for a role other than the superuser (the project's app role,
 * the dump role) over the container's socket, for dumps, loads and checks of
 * what the tenant wrote. No password: the images trust every local connection
 * (the official image's `local all all trust`), and only `docker exec` reaches
 * that socket.
 */
export function roleConninfo(role: string, database: string): string {
  return socketConninfo(POSTGRES_SOCKET_DIR, CONTAINER_PORT, role, database);
}
