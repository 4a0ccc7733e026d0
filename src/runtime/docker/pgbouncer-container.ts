// The project's PgBouncer container: on the app network and the private one,
// its config and userlist written in with putArchive before it starts (no
// bind mounts), reloaded when they change, and its console reached over its
// unix socket from inside the container.
import { setTimeout as sleep } from "node:timers/promises";
import type Docker from "dockerode";
import { RuntimeError, type DatabaseSpec, type PoolerInfo, type Rows } from "../runtime.js";
import { hardenedHostConfig, isHardened, PGBOUNCER_HARDENING } from "./container-hardening.js";
import { isConflict, statusCodeOf } from "./docker-errors.js";
import { isRunning, type DockerEngine } from "./docker-engine.js";
import type { CollectedExec, ExecSpec } from "./docker-exec.js";
import { CONTAINER_PORT, PORT_KEY, type ProjectNames } from "./docker-names.js";
import { appNetworkName, type DriverSettings } from "./driver-settings.js";
import {
  CONSOLE_USER,
  PGBOUNCER_CONFIG_DIR,
  PGBOUNCER_INI,
  PGBOUNCER_SOCKET_DIR,
  PGBOUNCER_USERLIST,
  renderContainerPgbouncerIni,
  renderUserlist,
  supportsPreparedStatements,
} from "./pgbouncer-container-config.js";
import type { PgbouncerImageFacts } from "./pgbouncer-image-facts.js";
import { CONNECT_TIMEOUT_ENV } from "./postgres-container.js";
import { nullMarker, parsePsqlCsv } from "../shared/psql-csv.js";
import { firstError } from "./psql-messages.js";
import { tarArchive } from "./tar-archive.js";

export interface NetworkIds {
  readonly app: string;
  readonly private: string;
}

/** A container that never ran has its networks recorded by name, without ids yet. */
function attachedTo(info: Docker.ContainerInspectInfo, name: string, id: string): boolean {
  return (
    info.HostConfig.NetworkMode === id ||
    Object.entries(info.NetworkSettings.Networks ?? {}).some(
      ([key, network]) => network.NetworkID === id || (!network.NetworkID && key === name),
    )
  );
}

export async function ensurePgbouncerContainer(
  engine: DockerEngine,
  settings: DriverSettings,
  spec: DatabaseSpec,
  names: ProjectNames,
  existing: Docker.ContainerInspectInfo | undefined,
  networks: NetworkIds,
  user: string,
): Promise<Docker.ContainerInspectInfo> {
  const appNetwork = appNetworkName(settings, names);
  const wantedBinding = settings.publishHost;
  let info = existing;
  if (info) {
    const binding = info.HostConfig.PortBindings?.[PORT_KEY]?.[0]?.HostIp;
    if (
      info.Config.Image !== settings.pgbouncerImage ||
      info.Config.User !== user ||
      binding !== wantedBinding ||
      !attachedTo(info, appNetwork, networks.app) ||
      !isHardened(info, PGBOUNCER_HARDENING)
    ) {
      // PgBouncer holds no state: a container made under other settings (or
      // before the driver hardened them) is replaced.
      engine.logger.info({ container: names.pgbouncer }, "PgBouncer container differs from the configuration; re-creating it");
      await engine.call(`removing container ${names.pgbouncer}`, () =>
        engine.docker.getContainer(names.pgbouncer).remove({ force: true }),
      );
      info = undefined;
    }
  }
  info ??= await engine.createContainer(spec, names.pgbouncer, "pgbouncer", {
    Image: settings.pgbouncerImage,
    User: user,
    ExposedPorts: { [PORT_KEY]: {} },
    StopSignal: "SIGINT",
    HostConfig: {
      Runtime: "runc",
      RestartPolicy: { Name: "unless-stopped" },
      NetworkMode: networks.app,
      ...hardenedHostConfig(PGBOUNCER_HARDENING),
      ...(wantedBinding ? { PortBindings: { [PORT_KEY]: [{ HostIp: wantedBinding, HostPort: "" }] } } : {}),
    },
  });
  if (!attachedTo(info, names.privateNetwork, networks.private)) {
    const id = info.Id;
    await engine.call(`connecting ${names.pgbouncer} to ${names.privateNetwork}`, async () => {
      try {
        await engine.docker.getNetwork(networks.private).connect({ Container: id });
      } catch (error) {
        // Already connected by a run that stopped right after.
        if (statusCodeOf(error) !== 403 && !isConflict(error)) throw error;
      }
    });
  }
  return info;
}

/** pgbouncer.ini and the userlist, into the container with putArchive (no bind mounts). */
export async function writePgbouncerFiles(
  engine: DockerEngine,
  container: Docker.Container,
  names: ProjectNames,
  verifier: string,
  facts: PgbouncerImageFacts,
): Promise<void> {
  // 0600 and owned by PgBouncer's user: the userlist holds the role's verifier.
  const owner = { mode: 0o600, uid: facts.uid, gid: facts.gid };
  const archive = tarArchive([
    {
      name: PGBOUNCER_INI,
      ...owner,
      content: renderContainerPgbouncerIni({
        database: names.database,
        postgresHost: names.postgres,
        preparedStatementsSupported: supportsPreparedStatements(facts.version),
      }),
    },
    { name: PGBOUNCER_USERLIST, ...owner, content: renderUserlist([[names.role, verifier]]) },
  ]);
  await engine.call(`writing PgBouncer's config into ${names.pgbouncer}`, () =>
    container.putArchive(archive, { path: PGBOUNCER_CONFIG_DIR }),
  );
}

export async function startOrReloadPgbouncer(engine: DockerEngine, container: Docker.Container, names: ProjectNames): Promise<void> {
  const info = await engine.inspectContainer(names.pgbouncer);
  if (!isRunning(info) && (await engine.startContainer(container, names.pgbouncer))) return;
  // A PgBouncer started a moment ago (by a racing process) may not answer
  // its console yet; one that never does cannot be trusted to have read the
  // files, and is started afresh.
  for (let attempt = 0; attempt < 10; attempt++) {
    const reload = await engine.tryExec(container, consoleExec("RELOAD"));
    if (reload?.exitCode === 0) return;
    await sleep(300);
  }
  engine.logger.warn({ container: names.pgbouncer }, "PgBouncer did not reload; restarting it");
  await engine.call(`restarting container ${names.pgbouncer}`, () => container.restart());
}

/** A real query as the app role through PgBouncer, from inside its container. */
export async function queryThroughPooler(
  engine: DockerEngine,
  container: Docker.Container,
  names: ProjectNames,
  password: string,
): Promise<CollectedExec> {
  const result = await engine.tryExec(container, {
    cmd: [
      ...["psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", String(CONTAINER_PORT)],
      ...["-U", names.role, "-d", names.database, "-c", "SELECT current_setting('server_version')"],
    ],
    // No user: the exec runs as the container's, PgBouncer's own.
    // The password reaches psql through the exec's environment, never argv.
    env: [`PGPASSWORD=${password}`, CONNECT_TIMEOUT_ENV, "PGAPPNAME=sota-db-ready"],
  });
  return result ?? { exitCode: -1, stdout: "", stderr: `${names.pgbouncer} is not running` };
}

/** The pooler's facts from its console's SHOW CONFIG rows. */
export function poolerInfoOf(config: Rows, version: string): PoolerInfo {
  const settings = new Map(config.map((row) => [row["key"] ?? "", row["value"] ?? ""]));
  // 1.21 lists it (as 0) although sota-db leaves it off there.
  const preparedStatementsSupported = Number(settings.get("max_prepared_statements") ?? 0) > 0;
  return {
    version,
    poolMode: settings.get("pool_mode") ?? "",
    defaultPoolSize: Number(settings.get("default_pool_size")),
    maxClientConn: Number(settings.get("max_client_conn")),
    preparedStatementsSupported,
    maxPreparedStatements: preparedStatementsSupported ? Number(settings.get("max_prepared_statements")) : 0,
  };
}

function consoleExec(command: string, marker = nullMarker()): ExecSpec {
  return {
    cmd: [
      ...["psql", "-X", "-q", "--csv", "-P", `null=${marker}`, "-h", PGBOUNCER_SOCKET_DIR],
      ...["-p", String(CONTAINER_PORT), "-U", CONSOLE_USER, "-d", "pgbouncer"],
    ],
    // No user: the exec runs as the container's, whose uid PgBouncer admits to its console.
    env: [CONNECT_TIMEOUT_ENV],
    stdin: `${command}\n`,
  };
}

export async function consoleQuery(engine: DockerEngine, container: Docker.Container, command: string): Promise<Rows> {
  const marker = nullMarker();
  const outcome = await engine.exec(container, "running a PgBouncer console command", consoleExec(command, marker));
  if (outcome.exitCode !== 0) {
    throw new RuntimeError(
      "failed",
      `PgBouncer console command failed (psql exit code ${outcome.exitCode})${firstError(outcome.stderr)}`,
    );
  }
  return parsePsqlCsv(outcome.stdout, marker);
}
