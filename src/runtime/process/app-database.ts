// The project's role app_{slug} and its database {slug}, brought to the wanted
// state step by step so that a run cut short anywhere is finished by the next.
import pg from "pg";
import { queryRows } from "./pg-clients.js";
import { createScramVerifier, scramVerifierMatches } from "./scram-secret.js";

/** Role and database in the template, renamed per project. Slugs cannot contain '_', so it never collides. */
export const PLACEHOLDER_NAME = "sota_template_app";

export function appRoleName(slug: string): string {
  return `app_${slug}`;
}

export function quoteIdent(name: string): string {
  return pg.escapeIdentifier(name);
}

/**
 * Makes `app_{slug}` a plain LOGIN role owning database `{slug}` whose password
 * is `password`, and returns the role's SCRAM verifier. A verifier that already
 * matches the password is kept, so repeating this changes nothing.
 * `client` is a superuser session on another database than `{slug}`.
 */
export async function ensureAppDatabase(client: pg.Client, slug: string, password: string): Promise<string> {
  const role = appRoleName(slug);
  const roles = await queryRows(
    client,
    `SELECT rolname, rolpassword, rolsuper::text, rolcreatedb::text, rolcreaterole::text, rolreplication::text,
            rolbypassrls::text, rolcanlogin::text
       FROM pg_authid WHERE rolname = ANY($1)`,
    [[role, PLACEHOLDER_NAME]],
  );
  let current = roles.find((row) => row["rolname"] === role);
  if (!current) {
    if (roles.some((row) => row["rolname"] === PLACEHOLDER_NAME)) {
      await queryRows(client, `ALTER ROLE ${quoteIdent(PLACEHOLDER_NAME)} RENAME TO ${quoteIdent(role)}`);
    } else {
      await queryRows(client, `CREATE ROLE ${quoteIdent(role)} LOGIN`);
    }
    current = { rolpassword: null, rolcanlogin: "true" };
  }
  const privileged = ["rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication", "rolbypassrls"].some(
    (column) => current[column] === "true",
  );
  if (privileged || current["rolcanlogin"] !== "true") {
    await queryRows(client, `ALTER ROLE ${quoteIdent(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS`);
  }

  let verifier = current["rolpassword"];
  if (!verifier || !scramVerifierMatches(password, verifier)) {
    verifier = createScramVerifier(password);
    await queryRows(client, `ALTER ROLE ${quoteIdent(role)} PASSWORD ${pg.escapeLiteral(verifier)}`);
  }

  const databases = await queryRows(
    client,
    "SELECT datname, pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = ANY($1)",
    [[slug, PLACEHOLDER_NAME]],
  );
  const database = databases.find((row) => row["datname"] === slug);
  if (!database) {
    if (databases.some((row) => row["datname"] === PLACEHOLDER_NAME)) {
      await queryRows(client, `ALTER DATABASE ${quoteIdent(PLACEHOLDER_NAME)} RENAME TO ${quoteIdent(slug)}`);
      await queryRows(client, `ALTER DATABASE ${quoteIdent(slug)} OWNER TO ${quoteIdent(role)}`);
    } else {
      await queryRows(client, `CREATE DATABASE ${quoteIdent(slug)} OWNER ${quoteIdent(role)}`);
    }
  } else if (database["owner"] !== role) {
    await queryRows(client, `ALTER DATABASE ${quoteIdent(slug)} OWNER TO ${quoteIdent(role)}`);
  }
  return verifier;
}
