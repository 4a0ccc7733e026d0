// Names and labels of everything the Docker driver creates for a project. The
// container names are the product spec's (sota-db-{slug}, sota-pgbouncer-{slug});
// the template copy container keeps its name sota-db-{slug}-seed and its role
// label "seed", as existing deployments have them. The labels are how the
// driver recognises its own objects (and refuses to touch anyone else's).
import type { RuntimeTarget } from "../runtime.js";
import { appRoleName } from "../shared/app-role.js";
import { checkTarget } from "../shared/target-checks.js";

export const LABEL_MANAGED = "io.sota.managed";
export const LABEL_PROJECT_ID = "io.sota.project-id";
export const LABEL_SLUG = "io.sota.slug";
export const LABEL_ROLE = "io.sota.role";

export type ObjectRole =
  | "postgres"
  | "pgbouncer"
  | "data"
  | "private-network"
  | "app-network"
  | "probe"
  /** A pre-initialised cluster per PostgreSQL image, copied into new data volumes. */
  | "template"
  /** The short-lived container that copies the template into a project's volume. */
  | "seed"
  /** The WAL receiver beside PostgreSQL: pg_receivewal streaming into the WAL archive. */
  | "walreceiver"
  /** The WAL archive volume: one directory per WAL generation. */
  | "wal"
  /** A short-lived container that works on a project's volumes (recovery, archive upkeep). */
  | "helper"
  /** A container never started, there while a recovery runs: what to put back if it is cut short. */
  | "recovery";

/** PostgreSQL's data directory inside its container (the official image's PGDATA). */
export const PGDATA = "/var/lib/postgresql/data";
/** Where the WAL archive volume is mounted in the WAL receiver and in helpers. */
export const WAL_ARCHIVE_DIR = "/var/lib/sota-wal";
/** Both PostgreSQL and PgBouncer listen on this port inside their containers. */
export const CONTAINER_PORT = 5432;
export const PORT_KEY = `${CONTAINER_PORT}/tcp`;


export interface ProjectNames {
  readonly postgres: string;
  readonly pgbouncer: string;
  readonly volume: string;
  readonly privateNetwork: string;
  /** The per-project app network's name (used only in "per-project" mode). */
  readonly projectAppNetwork: string;
  /** The container that fills a new data volume from the template. */
  readonly seed: string;
  /** The WAL receiver's container (pg_receivewal), beside PostgreSQL on the private network. */
  readonly walReceiver: string;
  /** The WAL archive: a volume with a directory per WAL generation. */
  readonly walVolume: string;
  /** Prefix of the short-lived helper containers' names (a random suffix follows). */
  readonly helper: string;
  /** The marker of a recovery in progress (see recovery-marker.ts). */
  readonly recoveryMarker: string;
  readonly role: string;
  readonly database: string;
}

export function projectNames(target: RuntimeTarget): ProjectNames {
  // The service validates names at the edge, but a bad one here would address
  // another object, so the driver checks again, by the same rules.
  checkTarget(target);
  const { slug } = target;
  return {
    postgres: `sota-db-${slug}`,
    pgbouncer: `sota-pgbouncer-${slug}`,
    volume: `sota-db-${slug}-data`,
    privateNetwork: `sota-db-${slug}-net`,
    projectAppNetwork: `sota-app-${slug}`,
    seed: `sota-db-${slug}-seed`,
    walReceiver: `sota-walreceiver-${slug}`,
    walVolume: `sota-wal-${slug}`,
    helper: `sota-db-${slug}-helper`,
    recoveryMarker: `sota-db-${slug}-recovery`,
    role: appRoleName(slug),
    database: slug,
  };
}

export function projectLabels(
  target: RuntimeTarget,
  role: ObjectRole,
  extra: Readonly<Record<string, string>>,
): Record<string, string> {
  return {
    ...extra,
    [LABEL_MANAGED]: "true",
    [LABEL_PROJECT_ID]: target.projectId,
    [LABEL_SLUG]: target.slug,
    [LABEL_ROLE]: role,
  };
}

/** Labels of a shared app network the driver had to create: it belongs to no project. */
export function sharedLabels(role: ObjectRole, extra: Readonly<Record<string, string>>): Record<string, string> {
  return { ...extra, [LABEL_MANAGED]: "true", [LABEL_ROLE]: role };
}

/**
 * Why an existing object under a managed name is not this project's `role`,
 * or undefined when it is. Such an object is never adopted nor deleted.
 */
export function ownershipProblem(
  kind: string,
  name: string,
  labels: Readonly<Record<string, string>> | null | undefined,
  target: RuntimeTarget,
  role: ObjectRole,
): string | undefined {
  const found = labels ?? {};
  if (found[LABEL_MANAGED] !== "true") {
    return `${kind} ${name} exists but was not created by sota-db; remove or rename it`;
  }
  if (found[LABEL_PROJECT_ID] !== target.projectId) {
    return `${kind} ${name} belongs to another project`;
  }
  if (found[LABEL_ROLE] !== role) {
    return `${kind} ${name} is a sota-db ${found[LABEL_ROLE] ?? "object"}, not the project's ${role}`;
  }
  return undefined;
}
