// What a driver checks of a request itself: slugs become paths, container
// names and identifiers, so each driver re-checks what the service validated,
// by the same rules and with the same errors whichever driver it is.
import { isProjectId, slugProblem } from "../../names.js";
import { RuntimeError, type DatabaseSpec, type RuntimeTarget } from "../runtime.js";

/** SCRAM needs SASLprep for anything else; the service's passwords are hex anyway. */
const PASSWORD = /^[\x21-\x7e]{1,1024}$/;

export function checkTarget(target: RuntimeTarget): void {
  if (slugProblem(target.slug) !== undefined) {
    throw new RuntimeError("failed", `invalid slug ${JSON.stringify(target.slug.slice(0, 60))}`);
  }
  if (!isProjectId(target.projectId)) throw new RuntimeError("failed", "invalid project id");
}

export function checkPassword(password: string): void {
  if (!PASSWORD.test(password)) {
    throw new RuntimeError("failed", "the database password must be 1 to 1024 printable ASCII characters without spaces");
  }
}

/** What ensure checks before it touches anything. */
export function checkSpec(spec: DatabaseSpec): void {
  checkTarget(spec);
  checkPassword(spec.password);
  if (spec.port !== undefined && (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535)) throw new RuntimeError("failed", "the endpoint port must be from 1 to 65535");
}

export function slugTaken(slug: string): RuntimeError {
  return new RuntimeError("conflict", `database ${slug} belongs to another project`);
}
