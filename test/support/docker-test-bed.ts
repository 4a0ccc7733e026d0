// A real Docker engine for the Docker driver's tests: finds it (or explains in
// one line why there is none), makes sure the offline images exist, gives each
// run a unique label and app network, captures the driver's logs, and removes
// by that label everything the run created.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import Docker from "dockerode";
import { describe, it } from "vitest";
import { createDockerRuntime, type DockerRuntime, type DockerRuntimeOptions } from "../../src/runtime/docker/index.js";
import { createLogger, type Logger } from "../../src/log.js";
import { demuxedLog } from "../../src/runtime/docker/docker-exec.js";

export const TEST_POSTGRES_IMAGE = process.env["SOTA_POSTGRES_IMAGE"] || "sota-db/postgres:17-trixie";
export const TEST_PGBOUNCER_IMAGE = process.env["SOTA_PGBOUNCER_IMAGE"] || "sota-db/pgbouncer:1.24-trixie";
/** Every object a test run creates carries this label key, with the run's id as value. */
export const TEST_RUN_LABEL = "io.sota.test-run";

const BUILD_SCRIPT = fileURLToPath(new URL("../../scripts/docker/build-images.sh", import.meta.url));
const run = promisify(execFile);

export interface EngineProbe {
  readonly reachable: boolean;
  /** Why not, in one line. */
  readonly reason: string;
}

/** Whether a Docker engine answers (DOCKER_HOST, else /var/run/docker.sock), within a few seconds. */
export async function probeDockerEngine(docker = new Docker()): Promise<EngineProbe> {
  try {
    await Promise.race([
      docker.ping(),
      new Promise((_, reject) => setTimeout(() => reject(new Error("no answer within 5s")), 5_000).unref()),
    ]);
    return { reachable: true, reason: "" };
  } catch (error) {
    const code = (error as { code?: string }).code;
    const where = process.env["DOCKER_HOST"] || "unix:///var/run/docker.sock";
    return { reachable: false, reason: `no Docker engine at ${where} (${code ?? (error as Error).message})` };
  }
}

let images: Promise<void> | undefined;

/**
 * The two images the tests run, built by scripts/docker/build-images.sh when
 * missing (it needs root and a Debian mirror; CI builds them before the tests).
 */
export function ensureTestImages(docker = new Docker()): Promise<void> {
  images ??= (async () => {
    const present = await Promise.all(
      [TEST_POSTGRES_IMAGE, TEST_PGBOUNCER_IMAGE].map((image) =>
        docker
          .getImage(image)
          .inspect()
          .then(() => true)
          .catch(() => false),
      ),
    );
    if (present.every(Boolean)) return;
    if (process.getuid?.() !== 0) {
      throw new Error(`images ${TEST_POSTGRES_IMAGE} / ${TEST_PGBOUNCER_IMAGE} are missing: run scripts/docker/build-images.sh as root`);
    }
    await run("bash", [BUILD_SCRIPT], {
      env: { ...process.env, SOTA_POSTGRES_IMAGE: TEST_POSTGRES_IMAGE, SOTA_PGBOUNCER_IMAGE: TEST_PGBOUNCER_IMAGE },
      timeout: 15 * 60_000,
      maxBuffer: 16 * 1024 * 1024,
    });
  })();
  return images;
}

/** Removes what the service created for a project (it labels everything with the project id): containers, networks, volumes. */
export async function removeProjectObjects(projectId: string, docker = new Docker()): Promise<void> {
  const filters = { label: [`io.sota.project-id=${projectId}`] };
  for (const container of await docker.listContainers({ all: true, filters })) {
    await docker.getContainer(container.Id).remove({ force: true, v: true }).catch(() => undefined);
  }
  for (const network of await docker.listNetworks({ filters })) await docker.getNetwork(network.Id).remove().catch(() => undefined);
  for (const volume of (await docker.listVolumes({ filters })).Volumes ?? []) await docker.getVolume(volume.Name).remove().catch(() => undefined);
}

/**
 * For a whole service under test: notes the template volumes (one per
 * PostgreSQL image) that exist now, and answers the cleanup that removes the
 * projects' objects, the app network, and any template volume made since.
 */
export async function serviceObjectsCleanup(appNetwork: string, docker = new Docker()): Promise<(projectIds: readonly string[]) => Promise<void>> {
  const templateFilter = { label: ["io.sota.managed=true", "io.sota.role=template"] };
  const templatesBefore = new Set(((await docker.listVolumes({ filters: templateFilter })).Volumes ?? []).map((volume) => volume.Name));
  return async (projectIds) => {
    for (const projectId of projectIds) await removeProjectObjects(projectId, docker);
    for (const network of await docker.listNetworks({ filters: { name: [appNetwork] } })) await docker.getNetwork(network.Id).remove().catch(() => undefined);
    for (const volume of (await docker.listVolumes({ filters: templateFilter })).Volumes ?? []) {
      if (!templatesBefore.has(volume.Name)) await docker.getVolume(volume.Name).remove().catch(() => undefined);
    }
  };
}

/** Log lines as pino writes them, with hooks a test can use to act at a given step. */
export class CapturedLogs {
  private readonly lines: string[] = [];
  private readonly hooks = new Set<(line: string) => void>();
  readonly logger: Logger;

  constructor() {
    this.logger = createLogger({
      level: "debug",
      destination: {
        write: (line: string) => {
          this.lines.push(line);
          for (const hook of [...this.hooks]) hook(line);
        },
      },
    });
  }

  text(): string {
    return this.lines.join("");
  }

  /** Calls `action` once, on the first line for which `match` holds. */
  once(match: (line: string) => boolean, action: () => void): void {
    const hook = (line: string): void => {
      if (!match(line)) return;
      this.hooks.delete(hook);
      action();
    };
    this.hooks.add(hook);
  }
}

export class DockerTestBed {
  readonly docker = new Docker();
  readonly runId = randomBytes(4).toString("hex");
  readonly label = { [TEST_RUN_LABEL]: this.runId };
  readonly appNetwork = `sota-test-${this.runId}-app`;
  readonly logs = new CapturedLogs();

  /** A runtime on this run's images, app network and label; `overrides` change any option. */
  runtime(overrides: Partial<DockerRuntimeOptions> = {}): DockerRuntime {
    return createDockerRuntime({
      postgresImage: TEST_POSTGRES_IMAGE,
      pgbouncerImage: TEST_PGBOUNCER_IMAGE,
      appNetwork: this.appNetwork,
      readyTimeoutMs: 90_000,
      labels: this.label,
      logger: this.logs.logger,
      ...overrides,
    });
  }

  /** Ids of the objects of this run that carry all of `labels` (key=value). */
  async find(labels: Record<string, string> = {}): Promise<{ containers: string[]; volumes: string[]; networks: string[] }> {
    const filters = { label: Object.entries({ ...this.label, ...labels }).map(([key, value]) => `${key}=${value}`) };
    const [containers, volumes, networks] = await Promise.all([
      this.docker.listContainers({ all: true, filters }),
      this.docker.listVolumes({ filters }),
      this.docker.listNetworks({ filters }),
    ]);
    return {
      containers: containers.map((container) => container.Names[0]?.replace(/^\//, "") ?? container.Id),
      volumes: (volumes.Volumes ?? []).map((volume) => volume.Name),
      networks: networks.map((network) => network.Name),
    };
  }

  /** Removes everything labelled with this run's id: containers, then networks, then volumes. */
  async cleanup(): Promise<void> {
    const filters = { label: [`${TEST_RUN_LABEL}=${this.runId}`] };
    const containers = await this.docker.listContainers({ all: true, filters });
    await Promise.all(
      containers.map((container) =>
        this.docker
          .getContainer(container.Id)
          .remove({ force: true, v: true })
          .catch(() => undefined),
      ),
    );
    const networks = await this.docker.listNetworks({ filters });
    for (const network of networks) await this.docker.getNetwork(network.Id).remove().catch(() => undefined);
    const volumes = await this.docker.listVolumes({ filters });
    for (const volume of volumes.Volumes ?? []) await this.docker.getVolume(volume.Name).remove().catch(() => undefined);
  }

  /**
   * Runs a throwaway client container (the PostgreSQL image, for psql) on
   * `network` with `script` under sh, and returns its exit code and output.
   * Traffic stays between containers on the run's own networks.
   */
  async runClient(network: string, script: string, env: string[] = []): Promise<{ exitCode: number; output: string }> {
    const container = await this.docker.createContainer({
      Image: TEST_POSTGRES_IMAGE,
      Entrypoint: ["sh", "-c", script],
      Cmd: [],
      Env: env,
      User: "postgres",
      Labels: { ...this.label, "io.sota.role": "test-client" },
      HostConfig: { NetworkMode: network, Runtime: "runc" },
    });
    try {
      await container.start();
      const { StatusCode } = (await container.wait()) as { StatusCode: number };
      const logs = await container.logs({ stdout: true, stderr: true, follow: false });
      return { exitCode: StatusCode, output: demuxedLog(logs) };
    } finally {
      // v: the image declares a VOLUME; its anonymous volume goes too.
      await container.remove({ force: true, v: true }).catch(() => undefined);
    }
  }
}

/**
 * Whether this file's Docker tests run: with an engine, or when CI requires
 * one (they then fail in beforeAll). Says in one line why they are skipped.
 */
export async function dockerTestsRun(what: string): Promise<{ run: boolean; engine: EngineProbe }> {
  const engine = await probeDockerEngine();
  const required = process.env["SOTA_REQUIRE_DOCKER"] === "1";
  if (!engine.reachable && !required) console.warn(`${what} skipped: ${engine.reason} (set SOTA_REQUIRE_DOCKER=1 to fail instead)`);
  return { run: engine.reachable || required, engine };
}

/**
 * `describe(name, body)` when a Docker engine answers. Without one, the
 * file's tests are skipped with one line, or, where CI requires an engine
 * (SOTA_REQUIRE_DOCKER=1), replaced by one test that fails saying why.
 */
export function describeWithDocker(name: string, engine: EngineProbe, body: () => void): void {
  if (engine.reachable) {
    describe(name, body);
  } else if (process.env["SOTA_REQUIRE_DOCKER"] === "1") {
    describe(name, () => {
      it("needs a Docker engine (SOTA_REQUIRE_DOCKER=1)", () => {
        throw new Error(`${engine.reason}: start one with scripts/docker/start-dockerd.sh`);
      });
    });
  } else {
    console.warn(`${name}: skipped: ${engine.reason} (set SOTA_REQUIRE_DOCKER=1 to fail instead)`);
    describe.skip(`${name} (no Docker engine)`, () => {
      it("needs a Docker engine", () => undefined);
    });
  }
}

/** The service's environment for the Docker runtime with the test images, after checking the engine and the images. */
export async function dockerServiceEnv(engine: EngineProbe, extra: Record<string, string> = {}): Promise<Record<string, string>> {
  if (!engine.reachable) throw new Error(`SOTA_REQUIRE_DOCKER=1 but ${engine.reason}`);
  await ensureTestImages();
  return { SOTA_RUNTIME: "docker", SOTA_POSTGRES_IMAGE: TEST_POSTGRES_IMAGE, SOTA_PGBOUNCER_IMAGE: TEST_PGBOUNCER_IMAGE, ...extra };
}
