// sota-db's own image (scripts/docker/build-service-image.sh, tag
// sota-db/sota-db:latest) run as an operator would: `docker run` with the
// defaults, then Ensure and GetConnection over Connect JSON on the published
// 127.0.0.1 port, then psql through the returned URL. Process runtime: root,
// PostgreSQL and PgBouncer inside the container, psql by docker exec. Docker
// runtime: as the non-root `sota` user with only the engine socket mounted,
// psql from a client container on the run's own app network.
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DockerTestBed,
  dockerTestsRun,
  ensureTestImages,
  serviceObjectsCleanup,
  TEST_PGBOUNCER_IMAGE,
  TEST_POSTGRES_IMAGE,
  TEST_RUN_LABEL,
} from "../support/docker-test-bed.js";

const run = promisify(execFile);
const BUILD_SCRIPT = fileURLToPath(new URL("../../scripts/docker/build-service-image.sh", import.meta.url));
const IMAGE = process.env["SOTA_SERVICE_IMAGE"] || "sota-db/sota-db:latest";
const DOCKER_SOCKET = "/var/run/docker.sock";

async function docker(...args: string[]): Promise<string> {
  const { stdout } = await run("docker", args, { maxBuffer: 16 * 1024 * 1024 });
  return stdout.trim();
}

/** The service in a container: its published 127.0.0.1 address and its admin token. */
interface Service {
  readonly name: string;
  readonly base: string;
  readonly token: string;
}

async function startService(name: string, bed: DockerTestBed, options: string[]): Promise<Service> {
  await docker("run", "-d", "--name", name, "--label", `${TEST_RUN_LABEL}=${bed.runId}`, "-p", "127.0.0.1::8080", ...options, IMAGE);
  const port = (await docker("port", name, "8080/tcp")).split("\n")[0]?.split(":").pop();
  const base = `http://127.0.0.1:${port}`;
  for (let attempt = 0; ; attempt++) {
    const ok = await fetch(`${base}/healthz`).then((response) => response.ok, () => false);
    if (ok) break;
    if (attempt >= 120) throw new Error(`${name} did not answer /healthz: ${await docker("logs", name).catch(() => "")}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  // The embedded default: an admin token generated into the data volume on first start.
  const token = await docker("exec", name, "cat", "/var/lib/sota-db/admin.token");
  return { name, base, token };
}

async function call<T>(service: Service, method: string, body: object): Promise<T> {
  const response = await fetch(`${service.base}/sota.database.v1.DatabaseService/${method}`, {
    method: "POST",
    headers: { authorization: `Bearer ${service.token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = (await response.json()) as T;
  if (!response.ok) throw new Error(`${method}: HTTP ${response.status} ${JSON.stringify(json)}`);
  return json;
}

interface EnsureJson {
  readonly database: { readonly state: string; readonly runtime: string };
}

/** Ensure then GetConnection, as the deploy engine calls them; the DATABASE_URL. */
async function provision(service: Service, projectId: string, slug: string): Promise<string> {
  const ensured = await call<EnsureJson>(service, "Ensure", { projectId, slug });
  expect(ensured.database.state).toBe("DATABASE_STATE_READY");
  const connection = await call<{ databaseUrl: string }>(service, "GetConnection", { projectId });
  expect(connection.databaseUrl).toMatch(/^postgresql:\/\//);
  return connection.databaseUrl;
}

const { run: runs, engine } = await dockerTestsRun("service image tests");

describe.runIf(runs)("the service image", () => {
  const bed = new DockerTestBed();
  const containers: string[] = [];
  const projects: string[] = [];
  let cleanupServiceObjects: ((projectIds: readonly string[]) => Promise<void>) | undefined;

  beforeAll(async () => {
    if (!engine.reachable) throw new Error(`SOTA_REQUIRE_DOCKER=1 but ${engine.reason}`);
    await ensureTestImages();
    // Idempotent and quick when the image is current; else it is rebuilt from this checkout.
    await run("bash", [BUILD_SCRIPT], {
      env: { ...process.env, SOTA_SERVICE_IMAGE: IMAGE, SOTA_PGBOUNCER_IMAGE: TEST_PGBOUNCER_IMAGE },
      timeout: 10 * 60_000,
    });
    cleanupServiceObjects = await serviceObjectsCleanup(bed.appNetwork, bed.docker);
  }, 11 * 60_000);

  afterAll(async () => {
    // -v: the data volume (anonymous, from the image's VOLUME) goes with each container.
    for (const name of containers) await docker("rm", "-f", "-v", name).catch(() => undefined);
    await cleanupServiceObjects?.(projects);
    await bed.cleanup();
  });

  it("listens on 0.0.0.0:8080, keeps its state in the /var/lib/sota-db volume, as root by default", async () => {
    const config = JSON.parse(await docker("image", "inspect", "--format", "{{json .Config}}", IMAGE)) as {
      User?: string;
      Env: string[];
      ExposedPorts: Record<string, unknown>;
      Volumes: Record<string, unknown>;
    };
    expect(config.Env).toEqual(expect.arrayContaining(["SOTA_LISTEN=0.0.0.0:8080", "SOTA_DATA_DIR=/var/lib/sota-db"]));
    // 5432 comes with the PgBouncer image it is built on (metadata only: a Dockerfile cannot drop it).
    expect(Object.keys(config.ExposedPorts)).toContain("8080/tcp");
    expect(Object.keys(config.Volumes)).toEqual(["/var/lib/sota-db"]);
    expect(config.User ?? "").toBe("");
  });

  it("process runtime: Ensure, GetConnection and psql through the URL inside the container", async () => {
    const name = `sota-test-${bed.runId}-service`;
    containers.push(name);
    const service = await startService(name, bed, []);
    const url = await provision(service, randomUUID(), `image-${bed.runId}`);
    // The URL names 127.0.0.1 inside the container: psql runs there, as the
    // unprivileged postgres user, the password reaching it in the URL.
    expect(new URL(url).hostname).toBe("127.0.0.1");
    const out = await docker("exec", "-u", "postgres", name, "psql", url, "-XAtc", "SELECT current_user || ' ' || 41 + 1");
    expect(out).toBe(`app_image-${bed.runId} 42`);
    // Root in the container: each database runs as an OS user of its own.
    expect(await docker("exec", name, "sh", "-c", "stat -c %a /var/lib/sota-db")).toBe("711");
    const owners = await docker("exec", name, "sh", "-c",
      'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = postgres ] && stat -c %U $p; done | sort -u');
    expect(owners).not.toBe("");
    expect(owners.split("\n")).not.toContain("root");
  }, 240_000);

  it("Docker runtime: as the non-root sota user with only the engine socket mounted", async () => {
    const name = `sota-test-${bed.runId}-service-docker`;
    containers.push(name);
    const socketGroup = String(statSync(DOCKER_SOCKET).gid);
    const service = await startService(name, bed, [
      ...["--user", "sota", "--group-add", socketGroup, "-v", `${DOCKER_SOCKET}:${DOCKER_SOCKET}`],
      ...["-e", "SOTA_RUNTIME=docker", "-e", `SOTA_POSTGRES_IMAGE=${TEST_POSTGRES_IMAGE}`, "-e", `SOTA_PGBOUNCER_IMAGE=${TEST_PGBOUNCER_IMAGE}`],
      ...["-e", `SOTA_DOCKER_NETWORK=${bed.appNetwork}`],
    ]);
    expect(await docker("exec", name, "id", "-un")).toBe("sota");
    const projectId = randomUUID();
    projects.push(projectId);
    const url = await provision(service, projectId, `image-d-${bed.runId}`);
    // The URL names PgBouncer's container on the app network, where apps are.
    const client = await bed.runClient(bed.appNetwork, 'psql "$DATABASE_URL" -XAtc "SELECT 41 + 1"', [`DATABASE_URL=${url}`]);
    expect(client).toEqual({ exitCode: 0, output: "42\n" });
  }, 240_000);
});
