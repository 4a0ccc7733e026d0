// The DATABASE_URL format of the product spec:
// postgresql://app_{slug}:{password}@{pooler-host}:{port}/{slug}?sslmode=disable
// and the session URL next to it: the same with the database {slug}_session.
import { sessionDatabase } from "../runtime/shared/pgbouncer-settings.js";

export function roleName(slug: string): string {
  return `app_${slug}`;
}

export function databaseUrl(parts: { slug: string; password: string; host: string; port: number }): string {
  const user = encodeURIComponent(roleName(parts.slug));
  const password = encodeURIComponent(parts.password);
  const database = encodeURIComponent(parts.slug);
  return `postgresql://${user}:${password}@${parts.host}:${parts.port}/${database}?sslmode=disable`;
}

/**
 * The session pool's URL: the same PgBouncer and the same credentials as
 * `url` (a DATABASE_URL), in session pool mode. Worked out from the
 * DATABASE_URL itself, so the two never disagree on host, port or password.
 */
export function sessionUrl(url: string, slug: string): string {
  const session = new URL(url);
  session.pathname = `/${encodeURIComponent(sessionDatabase(slug))}`;
  return session.toString();
}
