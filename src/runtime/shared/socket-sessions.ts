// How the service opens its own sessions on a project's PostgreSQL through the
// unix socket, in both drivers (the process driver from the host, the Docker
// driver with `docker exec` inside the container).
//
// Two kinds:
// - the superuser, for the service's maintenance (roles, scratch databases,
//   renames, ending sessions), always in the maintenance database `postgres`,
//   which no tenant owns (slugs cannot name it). Its search_path is pinned in
//   the startup packet: options sent by the client beat every ALTER DATABASE /
//   ALTER ROLE ... SET, so no object a tenant created, anywhere, can be found
//   by an unqualified name in a superuser session;
// - the project's app role, for everything that runs or looks at what a
//   tenant wrote (loading a dump, checks inside a loaded copy): the session
//   user is the tenant's own role, so nothing in its SQL can do more than the
//   tenant could through its DATABASE_URL. A SET ROLE would not do: the SQL
//   being loaded could RESET ROLE. pg_dump reads as the dump role, which has
//   the app role's privileges and nothing of the superuser's (dump-role.ts).

/** Startup options of every superuser session: search only the system catalogs (then temp, for relations only). */
export const SUPERUSER_STARTUP_OPTIONS = "-c search_path=pg_catalog,pg_temp";

/** A libpq connection string: values single-quoted, so any name is taken literally. */
export function socketConninfo(socketDir: string, port: number, user: string, database: string, options?: string): string {
  const value = (text: string): string => `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
  const parts = [`host=${value(socketDir)}`, `port=${port}`, `user=${value(user)}`, `dbname=${value(database)}`];
  if (options !== undefined) parts.push(`options=${value(options)}`);
  return parts.join(" ");
}
