// Which OS user PgBouncer runs as in its container. Community images each
// pick their own (postgres, a numeric uid, pgbouncer); PgBouncer refuses to
// run as root. The operator's choice wins, then the image's own USER, then
// the user sota-db's image has.
import { DEFAULT_PGBOUNCER_OS_USER } from "./pgbouncer-container-config.js";

function isRoot(user: string): boolean {
  const name = user.split(":")[0] ?? "";
  return name === "root" || name === "0";
}

/** configured: SOTA_PGBOUNCER_USER; imageUser: the image's Config.User ("" when it names none). */
export function pgbouncerOsUser(configured: string | undefined, imageUser: string | undefined): string {
  if (configured) return configured;
  if (imageUser && !isRoot(imageUser)) return imageUser;
  return DEFAULT_PGBOUNCER_OS_USER;
}
