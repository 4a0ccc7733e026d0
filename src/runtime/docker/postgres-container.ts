// The project's PostgreSQL container: created on the private network only,
// started, waited for, and brought to the wanted role and database with psql
// run inside it as the superuser over its unix socket.
import { randomBytes } from "node:crypto";
import type Docker from "dockerode";
import { loggableError } from "../../log.js";
import { dataLost, RuntimeError, type DatabaseSpec, type Rows } from "../runtime.js";
import { roleConninfo, appStateQuery, planAppRole, SUPERUSER, superuserConninfo, TEMPLATE_STATE } from "./app-role-sql.js";
import { hardenedHostConfig, isHardened, POSTGRES_HARDENING } from "./container-hardening.js";
import { limitFields, limitInPlace } from "./container-limits.js";
import { effectiveLimits } from "../shared/resource-limits.js";
import type { DockerEngine } from "./docker-engine.js";
import { CONTAINER_PORT, PGDATA, type ProjectNames } from "./docker-names.js";
import type { DriverSettings } from "./driver-settings.js";
import { nullMarker, parsePsqlCsv } from "../shared/psql-csv.js";
import { firstError } from "./psql-messages.js";
import { waitFor } from "./wait-for.js";

export const PG_OS_USER = "postgres";
export const CONNECT_TIMEOUT_ENV = "PGCONNECT_TIMEOUT=10";

/**
 * Polls inside the container, so one exec covers many checks 20 ms apart
 * instead of paying an engine round trip for each. TCP on 127.0.0.1: during
 * a first start the image initialises behind a server on the unix socket
 * only, and the real server is the one that listens on TCP.
 */
const UNTIL_ACCEPTING = `i=0; until pg_isready -q -h 127.0.0.1 -p ${CONTAINER_PORT}; do i=$((i+1)); [ "$i" -lt 100 ] || exit 1; sleep 0.02; done`;
const ACCEPTS_WITHIN_SECONDS = ["sh", "-c", UNTIL_ACCEPTING];
const SUPERUSER_PSQL = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "--dbname", superuserConninfo("postgres")];

/** The container, created when missing; starting it is the caller's next step. */
export async function ensurePostgresContainer(
  engine: DockerEngine,
  spec: DatabaseSpec,
  names: ProjectNames,
  settings: Pick<DriverSettings, "postgresImage" | "limits">,
  existing: Docker.ContainerInspectInfo | undefined,
  privateNetworkId: string,
): Promise<Docker.ContainerInspectInfo> {
  const image = settings.postgresImage;
  const limits = limitFields(effectiveLimits(settings.limits, spec.limits));
  if (existing && existing.Config.Image !== image) {
    // Data outlives images; switching PostgreSQL images is an operator's decision.
    engine.logger.warn(
      { container: names.postgres, image: existing.Config.Image, configured: image },
      "PostgreSQL container runs another image than configured; keeping it",
    );
  }
  if (existing) {
    await limitInPlace(engine, names, existing, limits);
    warnIfNotHardened(engine, names, existing);
  }
  return (
    existing ??
    (await engine.createContainer(spec, names.postgres, "postgres", {
      Image: image,
      Env: [
        `POSTGRES_USER=${SUPERUSER}`,
        // Required by the image's contract to initialise (a volume seeded from
        // the template skips that); the superuser's password is removed right
        // after (see app-role-sql.ts), so this value opens nothing.
        `POSTGRES_PASSWORD=${randomBytes(16).toString("hex")}`,
        `POSTGRES_DB=${names.database}`,
        `PGDATA=${PGDATA}`,
      ],
      StopSignal: "SIGINT",
      HostConfig: {
        Runtime: "runc",
        RestartPolicy: { Name: "unless-stopped" },
        Mounts: [{ Type: "volume", Source: names.volume, Target: PGDATA }],
        NetworkMode: privateNetworkId,
        ...hardenedHostConfig(POSTGRES_HARDENING),
        ...limits,
      },
    }))
  );
}

/**
 * An existing container holds the project's running server, so it is kept.
 * Capabilities and no-new-privileges cannot be changed in place: a container
 * made before the driver dropped them keeps them until the operator removes
 * it (never its volume) and the next ensure makes it anew on the same data.
 */
function warnIfNotHardened(engine: DockerEngine, names: ProjectNames, existing: Docker.ContainerInspectInfo): void {
  if (isHardened(existing, POSTGRES_HARDENING)) return;
  engine.logger.warn(
    { container: names.postgres },
    "PostgreSQL container predates the driver's hardening (dropped capabilities, no-new-privileges); keeping it: " +
      "remove the container, not its volume, and ensure the database again to re-create it hardened on the same data",
  );
}

export async function waitUntilAccepting(
  engine: DockerEngine,
  container: Docker.Container,
  containerName: string,
  deadline: { readonly at: number; readonly timeoutMs: number },
  signal: AbortSignal | undefined,
): Promise<void> {
  await waitFor(engine, {
    deadline: deadline.at,
    timeoutMs: deadline.timeoutMs,
    signal,
    what: `PostgreSQL in ${containerName} to accept connections`,
    containerName,
    attempt: async () => {
      const result = await engine.tryExec(container, { cmd: ACCEPTS_WITHIN_SECONDS, user: PG_OS_USER });
      return result?.exitCode === 0 ? true : undefined;
    },
  });
}

export function superuserQuery(engine: DockerEngine, container: Docker.Container, sql: string, database: string): Promise<Rows> {
  return psqlQuery(engine, container, sql, database, superuserConninfo(database));
}

/** As the project's app role: for looking inside a database the tenant wrote. */
export function appRoleQuery(engine: DockerEngine, container: Docker.Container, role: string, sql: string, database: string): Promise<Rows> {
  return psqlQuery(engine, container, sql, database, roleConninfo(role, database));
}

async function psqlQuery(engine: DockerEngine, container: Docker.Container, sql: string, database: string, conninfo: string): Promise<Rows> {
  const marker = nullMarker();
  const outcome = await engine.exec(container, `running an admin query in ${database}`, {
    cmd: [
      ...["psql", "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1", "-P", `null=${marker}`, "--no-password"],
      ...["--dbname", conninfo],
    ],
    user: PG_OS_USER,
    env: [CONNECT_TIMEOUT_ENV],
    stdin: `${sql}\n`,
  });
  if (outcome.exitCode !== 0) {
    throw new RuntimeError(
      "failed",
      `admin query in ${database} failed (psql exit code ${outcome.exitCode})${firstError(outcome.stderr)}`,
    );
  }
  return parsePsqlCsv(outcome.stdout, marker);
}

/** Statements on psql's stdin, never its command line (they may hold a verifier). */
export async function runSuperuserScript(
  engine: DockerEngine,
  container: Docker.Container,
  what: string,
  statements: readonly string[],
): Promise<void> {
  const outcome = await engine.exec(container, what, {
    cmd: SUPERUSER_PSQL,
    user: PG_OS_USER,
    env: [CONNECT_TIMEOUT_ENV],
    stdin: `${statements.join("\n")}\n`,
  });
  if (outcome.exitCode !== 0) throw new RuntimeError("failed", `${what} failed${firstError(outcome.stderr)}`);
}

/**
 * Returns the verifier PostgreSQL holds for the role. A second try covers a
 * database created meanwhile by another service process ensuring the same
 * project: it then only has to be found.
 */
export async function ensureAppRole(
  engine: DockerEngine,
  container: Docker.Container,
  names: ProjectNames,
  password: string,
  proposedVerifier?: string,
  mustExist = false,
): Promise<string> {
  const once = async (): Promise<string> => {
    const [state] = await superuserQuery(engine, container, appStateQuery(names.role, names.database), "postgres");
    // The image's entrypoint makes a new cluster (with database POSTGRES_DB) in
    // an emptied volume: the app role missing from it means the data is gone.
    if (mustExist && (state?.["role_exists"] !== "1" || state["database_exists"] !== "1")) {
      throw dataLost(names.database, `${names.volume} holds a new cluster without its role`);
    }
    const plan = planAppRole(state, names.role, names.database, password, proposedVerifier);
    if (plan.statements.length > 0) {
      await runSuperuserScript(
        engine,
        container,
        `setting up role ${names.role} and database ${names.database} in ${names.postgres}`,
        plan.statements,
      );
    }
    return plan.verifier;
  };
  try {
    return await once();
  } catch (error) {
    if (!(error instanceof RuntimeError) || error.reason !== "failed") throw error;
    return once();
  }
}

/**
 * For a cluster this ensure has just copied from the template, whose state is
 * known: one exec waits until it accepts and sets up the role and database.
 * Undefined when that did not work out (a racing process got there first,
 * the server is slow to start): the caller then takes the general way.
 */
export async function setUpFromTemplate(
  engine: DockerEngine,
  container: Docker.Container,
  names: ProjectNames,
  password: string,
  proposedVerifier: string,
): Promise<string | undefined> {
  const plan = planAppRole(TEMPLATE_STATE, names.role, names.database, password, proposedVerifier);
  const outcome = await engine.tryExec(container, {
    cmd: ["sh", "-c", `${UNTIL_ACCEPTING}; exec "$@"`, "sh", ...SUPERUSER_PSQL],
    user: PG_OS_USER,
    env: [CONNECT_TIMEOUT_ENV],
    stdin: `${plan.statements.join("\n")}\n`,
  });
  return outcome?.exitCode === 0 ? plan.verifier : undefined;
}
