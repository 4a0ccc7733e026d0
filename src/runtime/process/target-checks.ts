// What the driver checks of a request itself: slugs become paths and
// identifiers, so it re-checks what the service validated.
import { RuntimeError, type RuntimeTarget } from "../runtime.js";

const SLUG = /^[a-z](?:[a-z0-9]|-(?!-))*$/;
const MAX_SLUG_LENGTH = 40;
const PROJECT_ID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
/** SCRAM needs SASLprep for anything else; the service's passwords are hex anyway. */
const PASSWORD = /^[\x21-\x7e]{1,1024}$/;

export function checkTarget(target: RuntimeTarget): void {
  if (target.slug.length > MAX_SLUG_LENGTH || !SLUG.test(target.slug) || target.slug.endsWith("-")) {
    throw new RuntimeError("failed", `invalid slug ${JSON.stringify(target.slug.slice(0, 60))}`);
  }
  if (!PROJECT_ID.test(target.projectId)) throw new RuntimeError("failed", "invalid project id");
}

export function checkPassword(password: string): void {
  if (!PASSWORD.test(password)) {
    throw new RuntimeError("failed", "the database password must be 1 to 1024 printable ASCII characters without spaces");
  }
}

export function slugTaken(slug: string): RuntimeError {
  return new RuntimeError("conflict", `database ${slug} belongs to another project`);
}
