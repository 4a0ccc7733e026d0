// Disaster recovery on the Docker runtime: host A (SOTA_RUNTIME=docker, its
// receiver container streaming WAL, copies to a real S3-compatible server on
// 127.0.0.1) serves a project until its base backup and WAL are in the
// bucket; then the host is lost: the service stops, its data dir is deleted,
// and the project's containers and volumes go with the engine's disk. Host B
// (a new, empty data dir, the same master key file, tokens file and bucket)
// brings the database back on the deploy engine's ordinary Ensure: the base
// backup recovered in a new volume, the bucket's WAL streamed into it through
// `docker exec` as the image's postgres user, the same DATABASE_URL, every
// row up to the last one copied. The test reaches the database through
// PgBouncer's port published on 127.0.0.1.
import { randomUUID } from "node:crypto";
import Docker from "dockerode";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PORT_KEY } from "../../src/runtime/docker/docker-names.js";
import type { Harness } from "../support/app-harness.js";
import { describeWithDocker, dockerServiceEnv, DockerTestBed, probeDockerEngine, serviceObjectsCleanup } from "../support/docker-test-bed.js";
import { startDrBed, type DrBed } from "../support/dr-hosts.js";
import { rest } from "../support/pitr-api.js";
import { queryUrl } from "../support/url-query.js";

const engine = await probeDockerEngine();

describeWithDocker("disaster recovery from the bucket on the Docker runtime", engine, () => {
  const docker = new DockerTestBed();
  const projectId = randomUUID();
  const slug = `ddr-${docker.runId}`;
  const path = `/v1/projects/${projectId}/database`;
  let bed: DrBed;
  let env: Record<string, string>;
  let cleanup: (projectIds: readonly string[]) => Promise<void>;
  let a: Harness;
  let url: string;

  /** The URL with PgBouncer's published loopback port in place of its in-network host:port. */
  async function loopback(databaseUrl: string): Promise<string> {
    const published = await new Docker().getContainer(`sota-pgbouncer-${slug}`).inspect();
    const binding = published.NetworkSettings.Ports[PORT_KEY]?.find((candidate) => candidate.HostIp === "127.0.0.1");
    const reached = new URL(databaseUrl);
    reached.hostname = "127.0.0.1";
    reached.port = binding!.HostPort;
    return reached.toString();
  }

  beforeAll(async () => {
    env = await dockerServiceEnv(engine, { SOTA_DOCKER_NETWORK: docker.appNetwork, SOTA_DOCKER_PUBLISH_HOST: "127.0.0.1" });
    cleanup = await serviceObjectsCleanup(docker.appNetwork);
    bed = await startDrBed("docker-dr", 36);
    a = await bed.host(env);
  });

  afterAll(async () => {
    await bed?.close();
    await cleanup?.([projectId]);
  });

  it("host A: the database, its base backup and its WAL reach the bucket; the host is lost with its containers and volumes", async () => {
    expect((await rest(a, path, { method: "POST", token: a.tokens.deployer, body: { slug } })).status).toBe(200);
    url = (await a.app.service.connection(projectId)).url;
    await queryUrl(await loopback(url), "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 40)");
    await bed.untilCopied(a, { projectId, slug });
    // After the base backup: only the WAL streamed from the bucket holds it.
    await queryUrl(await loopback(url), "INSERT INTO orders VALUES (41)");
    await bed.untilCopied(a, { projectId, slug });
    await bed.lose(a);
    // The engine's disk goes with the host: every container and volume of the project.
    await cleanup([projectId]);
    expect(await docker.docker.listVolumes({ filters: { label: [`io.sota.project-id=${projectId}`] } }).then((found) => found.Volumes ?? [])).toEqual([]);
  });

  it("host B: Ensure brings it back from the bucket behind the very same DATABASE_URL, every row there", async () => {
    const b = await bed.host(env);
    const ensured = await rest(b, path, { method: "POST", token: b.tokens.deployer });
    expect(ensured.status, ensured.text).toBe(200);
    expect(ensured.json).toMatchObject({ created: true, database: { slug, state: "DATABASE_STATE_READY" } });
    expect((await b.app.service.connection(projectId)).url).toBe(url);
    expect((await queryUrl(await loopback(url), "SELECT count(*)::int AS n FROM orders")).rows[0].n).toBe(41);
    expect(b.logs.some((line) => line.includes("base backup and the WAL the bucket holds"))).toBe(true);
  });
});
