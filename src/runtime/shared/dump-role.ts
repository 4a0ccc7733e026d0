// The role pg_dump connects as: sota_dump, one per cluster (every project has
// a cluster of its own), a member of the project's app role and BYPASSRLS.
//
// Why not the app role itself: a table with FORCE ROW LEVEL SECURITY applies
// its policies to its owner too, and pg_dump refuses to dump rows it might
// not see (it runs with row_security off). The superuser would read them, but
// pg_dump as the superuser is what let tenant SQL run with the superuser's
// rights (issue 9). sota_dump holds exactly the app role's privileges (by
// membership) plus reading past row security on tables the app role owns,
// which the tenant can switch off on those tables anyway: no more than the
// tenant has. It has no password, so it can log in only over the unix socket
// the service alone reaches (and never through PgBouncer, whose userlist has
// the app role only). Loads need no such role: pg_dump enables row security
// after the data is in, so they run as the app role itself.
//
// pg_dump needs no special option for the app role to replay its output:
// every object in the database is the app role's (the only role a tenant
// has), the extensions it may create are the trusted ones it then owns, and
// what belongs to the cluster (roles, database properties) is not in a plain
// dump (createScratchLike copies the database's). Owners and grants are kept,
// so a restore gives back the same privileges. test/security/tenant-sql.test.ts
// round-trips extensions, comments, grants, row security and large objects.
import pg from "pg";

export const DUMP_ROLE = "sota_dump";

/**
 * Idempotent superuser SQL (for the maintenance database) giving the cluster
 * its dump role, as a member of `appRole`. Run before each dump: clusters made
 * by earlier releases have none, and the check costs one statement.
 */
export function dumpRoleSql(appRole: string): string {
  const dumpRole = pg.escapeIdentifier(DUMP_ROLE);
  return `DO $sota$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${pg.escapeLiteral(DUMP_ROLE)}) THEN
    CREATE ROLE ${dumpRole} LOGIN INHERIT BYPASSRLS NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
  END IF;
  IF NOT pg_catalog.pg_has_role(${pg.escapeLiteral(DUMP_ROLE)}, ${pg.escapeLiteral(appRole)}, 'USAGE') THEN
    EXECUTE pg_catalog.format('GRANT %I TO %I', ${pg.escapeLiteral(appRole)}, ${pg.escapeLiteral(DUMP_ROLE)});
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL; -- another service process made it meanwhile
END $sota$;`;
}
