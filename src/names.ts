// Names a user may send, validated at the edge (DESIGN.md, "Names and limits"),
// and checked again by the runtimes before a name becomes a path or an object.
// Slugs become SQL identifiers, OS paths and container names, so the rules are strict.
import { randomBytes } from "node:crypto";

const SLUG = /^[a-z](?:[a-z0-9]|-(?!-))*$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const BACKUP_ID = /^\d{8}t\d{9}z-[0-9a-f]{12}$/;

export const MAX_SLUG_LENGTH = 40;

/** Why a slug is invalid, or undefined when it is valid. */
export function slugProblem(slug: string): string | undefined {
  if (slug.length === 0) return "slug must not be empty";
  if (slug.length > MAX_SLUG_LENGTH) return `slug must be at most ${MAX_SLUG_LENGTH} characters`;
  if (!/^[a-z]/.test(slug)) return "slug must start with a lowercase letter";
  if (!SLUG.test(slug)) return "slug may contain only lowercase letters, digits and single '-'";
  if (slug.endsWith("-")) return "slug must not end with '-'";
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
