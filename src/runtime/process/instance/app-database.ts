// The project's role app_{slug} and its database {slug}, brought to the wanted
// state step by step so that a run cut short anywhere is finished by the next.
import pg from "pg";
import { queryRows } from "../sql/pg-clients.js";
import {
  APP_ROLE_CONNECTION_LIMIT,
  appRoleName,
  createDatabaseSql,
  createRoleSql,
  PRIVILEGE_COLUMNS,
  resetRoleSql,
  setOwnerSql,
  setVerifierSql,
  verifierToHold,
} from "../../shared/app-role.js";

/** Role and database in the template, renamed per project. Slugs cannot contain '_', so it never collides. */
export const PLACEHOLDER_NAME = "sota_template_app";

export function quoteIdent(name: string): string {
  return pg.escapeIdentifier(name);
}

/**
 * Makes `app_{slug}` a plain LOGIN role owning database `{slug}` whose password
 * is `password`, and returns the role's SCRAM verifier. A verifier that already
 * matches the password is kept, so repeating this changes nothing; otherwise
 * `verifier` (made for `password`) is set, so the caller may hand the same one
 * to PgBouncer before this has finished. `client` is a superuser session on
 * another database than `{slug}`.
 */
export async function ensureAppDatabase(client: pg.Client, slug: string, password: string, verifier: string): Promise<string> {
  // One transaction, committed without waiting for its own WAL flush: every
  // ensure checks and redoes all of this, and the app's first commit flushes
  // the WAL these changes are in. A fresh copy thus costs one commit, not five fsyncs.
  await queryRows(client, "SET synchronous_commit TO off");
  await queryRows(client, "BEGIN");
  let createDatabase: boolean;
  let current: string;
  try {
    current = await ensureRole(client, slug, password, verifier);
    createDatabase = await ensureOwnedDatabase(client, slug);
    await queryRows(client, "COMMIT");
  } catch (error) {
    await queryRows(client, "ROLLBACK").catch(() => undefined);
    throw error;
  }
  // CREATE DATABASE cannot run inside a transaction block; copies of the
  // template only get here when its placeholder database has gone missing.
  if (createDatabase) await queryRows(client, createDatabaseSql(slug, appRoleName(slug)));
  return current;
}

async function ensureRole(client: pg.Client, slug: string, password: string, verifier: string): Promise<string> {
  const role = appRoleName(slug);
  const roles = await queryRows(
    client,
    `SELECT rolname, rolpassword, rolsuper::text, rolcreatedb::text, rolcreaterole::text, rolreplication::text,
            rolbypassrls::text, rolcanlogin::text, rolconnlimit::text
       FROM pg_authid WHERE rolname = ANY($1)`,
    [[role, PLACEHOLDER_NAME]],
  );
  let current = roles.find((row) => row["rolname"] === role);
  if (!current) {
    if (roles.some((row) => row["rolname"] === PLACEHOLDER_NAME)) {
      await queryRows(client, `ALTER ROLE ${quoteIdent(PLACEHOLDER_NAME)} RENAME TO ${quoteIdent(role)}`);
    } else {
      await queryRows(client, createRoleSql(role));
    }
    current = { rolpassword: null, rolcanlogin: "true" };
  }
  const privileged = PRIVILEGE_COLUMNS.some((column) => current[column] === "true");
  const limited = current["rolconnlimit"] === String(APP_ROLE_CONNECTION_LIMIT);
  if (privileged || current["rolcanlogin"] !== "true" || !limited) await queryRows(client, resetRoleSql(role));
  const recorded = current["rolpassword"];
  const held = verifierToHold(password, recorded, verifier);
  if (held !== recorded) await queryRows(client, setVerifierSql(role, held));
  return held;
}

/** Renames the placeholder database or fixes the owner; returns whether the database must still be created. */
async function ensureOwnedDatabase(client: pg.Client, slug: string): Promise<boolean> {
  const role = appRoleName(slug);
  const databases = await queryRows(
    client,
    "SELECT datname, pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = ANY($1)",
    [[slug, PLACEHOLDER_NAME]],
  );
  const database = databases.find((row) => row["datname"] === slug);
  if (database) {
    if (database["owner"] !== role) await queryRows(client, setOwnerSql(slug, role));
    return false;
  }
  if (!databases.some((row) => row["datname"] === PLACEHOLDER_NAME)) return true;
  await queryRows(client, `ALTER DATABASE ${quoteIdent(PLACEHOLDER_NAME)} RENAME TO ${quoteIdent(slug)}`);
  await queryRows(client, setOwnerSql(slug, role));
  return false;
}
