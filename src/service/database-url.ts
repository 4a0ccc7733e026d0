// The DATABASE_URL format of the product spec:
// postgresql://app_{slug}:{password}@{pooler-host}:{port}/{slug}?sslmode=disable

export function roleName(slug: string): string {
  return `app_${slug}`;
}

export function databaseUrl(parts: { slug: string; password: string; host: string; port: number }): string {
  const user = encodeURIComponent(roleName(parts.slug));
  const password = encodeURIComponent(parts.password);
  const database = encodeURIComponent(parts.slug);
  return `postgresql://${user}:${password}@${parts.host}:${parts.port}/${database}?sslmode=disable`;
}
