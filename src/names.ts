// Names a user may send, validated at the edge (DESIGN.md, "Names and limits"),
// and checked again by the runtimes before a name becomes a path or an object.
// Slugs become SQL identifiers, OS paths and container names, so the rules are strict.
import { randomBytes } from "node:crypto";

const SLUG = /^[a-z](?:[a-z0-9]|-(?!-))*$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const BACKUP_ID = /^\d{8}t\d{9}z-[0-9a-f]{12}$/;

export const MAX_SLUG_LENGTH = 40;

/**
 * Names PostgreSQL, PgBouncer or the service itself use, which a project's
 * database (and role app_{slug}) must never take: a tenant owning the
 * maintenance database could plant code that the service's own superuser
 * sessions run. Role names need no list: every project role is app_{slug},
 * and the service's own roles (postgres, sota_*) cannot have that form.
 */
const RESERVED_SLUGS: ReadonlyMap<string, string> = new Map([
  ["postgres", "PostgreSQL's maintenance database, where the service runs its own queries"],
  ["template0", "one of PostgreSQL's template databases"],
  ["template1", "one of PostgreSQL's template databases"],
  ["pgbouncer", "PgBouncer's admin console database"],
]);

/**
 * Shapes of slugs whose Docker objects would carry the names of another
 * project's or the driver's own objects (see docker-names.ts): sota-db-{slug}
 * is also the template copy container sota-db-{other}-seed, and the driver's
 * template lives under sota-db-template-*.
 */
const RESERVED_SHAPES: readonly { readonly test: (slug: string) => boolean; readonly why: string }[] = [
  { test: (slug) => slug.endsWith("-seed"), why: "slugs ending in '-seed' name the container that copies the template into another project's volume" },
  { test: (slug) => slug.startsWith("template-"), why: "slugs starting with 'template-' name the service's database templates" },
];

/** A slug derived from a project id (see slugForProject): "p-" and 32 hex digits. */
const DERIVED_SLUG = /^p-[0-9a-f]{32}$/;

/** Why a slug is invalid, or undefined when it is valid. */
export function slugProblem(slug: string): string | undefined {
  if (slug.length === 0) return "slug must not be empty";
  if (slug.length > MAX_SLUG_LENGTH) return `slug must be at most ${MAX_SLUG_LENGTH} characters`;
  if (!/^[a-z]/.test(slug)) return "slug must start with a lowercase letter";
  if (!SLUG.test(slug)) return "slug may contain only lowercase letters, digits and single '-'";
  if (slug.endsWith("-")) return "slug must not end with '-'";
  const reserved = RESERVED_SLUGS.get(slug);
  if (reserved !== undefined) return `slug "${slug}" is reserved: it is ${reserved}`;
  const shape = RESERVED_SHAPES.find((candidate) => candidate.test(slug));
  if (shape !== undefined) return `slug "${slug}" is reserved: ${shape.why}`;
  return undefined;
}

/**
 * Why `projectId` may not ask for `slug`, beyond the slug's own rules: a slug
 * of the derived form belongs only to the project whose id it encodes, so no
 * other project can take it first and lock that project out.
 */
export function slugProblemFor(projectId: string, slug: string): string | undefined {
  const problem = slugProblem(slug);
  if (problem !== undefined) return problem;
  if (DERIVED_SLUG.test(slug) && slug !== slugForProject(projectId)) {
    return `slug "${slug}" is reserved: it is the default slug of another project (p- and that project's id)`;
  }
  return undefined;
}

/** Whether the id is a project id in canonical form (a lowercase UUID), as the service passes it on. */
export function isProjectId(projectId: string): boolean {
  return UUID.test(projectId);
}

/** The canonical (lowercase) project id, or undefined when it is not a UUID. */
export function normalizeProjectId(projectId: string): string | undefined {
  const lower = projectId.trim().toLowerCase();
  return UUID.test(lower) ? lower : undefined;
}

/**
 * A slug for a project that did not name one: "p-" and the id's 32 hex digits,
 * unique because project ids are, and valid under the slug rules.
 */
export function slugForProject(projectId: string): string {
  return `p-${projectId.replace(/-/g, "")}`;
}

/**
 * Backup ids sort by start time and carry no path characters:
 * "20261126t031452123z-" followed by 12 random hex digits.
 */
export function newBackupId(at: Date): string {
  const stamp = at.toISOString().replace(/[-:.]/g, "").toLowerCase();
  return `${stamp}-${randomBytes(6).toString("hex")}`;
}

export function isBackupId(id: string): boolean {
  return BACKUP_ID.test(id);
}
