// The project's role app_{slug} as both drivers leave it: a plain LOGIN role
// with none of the privileges below, holding a SCRAM verifier of the spec's
// password, and owning database {slug}. The drivers differ in how they ask
// PostgreSQL (a pg client, or psql through docker exec); the names, the rules
// and the statements are these.
import pg from "pg";
import { createScramVerifier, scramVerifierMatches } from "./scram-secret.js";
import { DEFAULT_POOL_SIZE, SESSION_POOL_SIZE } from "./pgbouncer-settings.js";

export function appRoleName(slug: string): string {
  return `app_${slug}`;
}

/** pg_authid's columns of what the app role must never have. */
export const PRIVILEGE_COLUMNS = ["rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication", "rolbypassrls"] as const;

/**
 * Sessions the app role may hold at once: PgBouncer's two pools (the
 * transaction pool and the session pool, whose server connections all log in
 * as this role) and 2 more for the service's own sessions as the role
 * (restores, checks). Below max_connections (33 in the process runtime), so a
 * tenant's role can never take the slots the superuser and the dump role need.
 */
export const APP_ROLE_CONNECTION_LIMIT = DEFAULT_POOL_SIZE + SESSION_POOL_SIZE + 2;

export function createRoleSql(role: string): string {
  return `CREATE ROLE ${pg.escapeIdentifier(role)} LOGIN CONNECTION LIMIT ${APP_ROLE_CONNECTION_LIMIT}`;
}

/** Takes every privilege back, lets the role log in and restores its connection limit (a tenant may have changed any). */
export function resetRoleSql(role: string): string {
  return `ALTER ROLE ${pg.escapeIdentifier(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT ${APP_ROLE_CONNECTION_LIMIT}`;
}

export function setVerifierSql(role: string, verifier: string): string {
  return `ALTER ROLE ${pg.escapeIdentifier(role)} PASSWORD ${pg.escapeLiteral(verifier)}`;
}

export function createDatabaseSql(database: string, role: string): string {
  return `CREATE DATABASE ${pg.escapeIdentifier(database)} OWNER ${pg.escapeIdentifier(role)}`;
}

export function setOwnerSql(database: string, role: string): string {
  return `ALTER DATABASE ${pg.escapeIdentifier(database)} OWNER TO ${pg.escapeIdentifier(role)}`;
}

/**
 * The verifier the role should hold: the one it has when that matches the
 * password (so repeating an ensure changes nothing), else `proposed` (one the
 * caller may already have handed PgBouncer), else a new one.
 */
export function verifierToHold(password: string, current: string | null | undefined, proposed?: string): string {
  if (current && scramVerifierMatches(password, current)) return current;
  return proposed ?? createScramVerifier(password);
}
