// Issue 12 item 6: when a database's data directory or volume is lost on a
// running host, the service never hands out a fresh empty database under the
// old URL. Ensure (the deploy engine's call on every deploy) answers
// DATA_LOSS, the database is reported failed, and the old URL reaches no
// empty database. Both runtimes, against the real service.
import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";
import { dockerServiceEnv, DockerTestBed, dockerTestsRun, removeProjectObjects, TEST_POSTGRES_IMAGE } from "../support/docker-test-bed.js";
import { grpc, grpcClients, grpcCode, type GrpcClients } from "../support/grpc-client.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";
import { queryUrl } from "../support/url-query.js";
import { PORT_KEY } from "../../src/runtime/docker/docker-names.js";

/** What a deploy engine would see: the database's state, and whether the old URL still leads to the data. */
async function afterLoss(rpc: GrpcClients, h: Harness, projectId: string, url: string): Promise<void> {
  expect(await grpcCode(rpc.database("ensure", { projectId }, h.tokens.deployer))).toBe(grpc.status.DATA_LOSS);
  const { database } = await rpc.database("getDatabase", { projectId }, h.tokens.deployer);
  expect(database.state).toBe("DATABASE_STATE_FAILED");
  expect(database.error).toMatch(/is gone/);
  // The URL leads to no database at all: never to an empty one that would take the app's writes.
  const reached = await queryUrl(url, "SELECT count(*)::int AS n FROM pg_class WHERE relname = 'orders'").then(
    (result) => `connected: ${JSON.stringify(result.rows)}`,
    () => "refused",
  );
  expect(reached).toBe("refused");
  // Every later Ensure says the same: nothing was recreated in between.
  expect(await grpcCode(rpc.database("ensure", { projectId }, h.tokens.deployer))).toBe(grpc.status.DATA_LOSS);
}

describe("a lost data directory on the process runtime", () => {
  let h: Harness;
  let rpc: GrpcClients;
  const projectId = randomUUID();
  const slug = "losing-shop";

  beforeAll(async () => {
    h = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(48) });
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
  });

  afterAll(async () => {
    rpc?.close();
    await h?.stop();
  });

  it("is reported failed with DATA_LOSS, never replaced by an empty database under the old URL", async () => {
    await rpc.database("ensure", { projectId, slug }, h.tokens.deployer);
    const { databaseUrl } = await rpc.database("getConnection", { projectId }, h.tokens.deployer);
    await queryUrl(databaseUrl, "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)");
    // The whole data directory, gone while PostgreSQL runs on it.
    // Retried: PostgreSQL and its WAL receiver still write into it meanwhile.
    await rm(join(h.dataDir, "instances", slug, "pgdata"), { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
    await afterLoss(rpc, h, projectId, databaseUrl);
    expect(h.logs.join("")).not.toContain(new URL(databaseUrl).password);
  });
});

const docker = await dockerTestsRun("Docker lost-data tests");

describe.skipIf(!docker.run)("a lost data volume on the Docker runtime", () => {
  const bed = new DockerTestBed();
  const engine = new Docker();
  let h: Harness;
  let rpc: GrpcClients;
  const emptied = { projectId: randomUUID(), slug: `empt-${bed.runId}` };
  const removed = { projectId: randomUUID(), slug: `gone-${bed.runId}` };

  beforeAll(async () => {
    h = await startHarness(await dockerServiceEnv(docker.engine, { SOTA_DOCKER_NETWORK: bed.appNetwork, SOTA_DOCKER_PUBLISH_HOST: "127.0.0.1" }));
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
  });

  afterAll(async () => {
    rpc?.close();
    await h?.stop();
    for (const { projectId } of [emptied, removed]) await removeProjectObjects(projectId);
    for (const network of await engine.listNetworks({ filters: { name: [bed.appNetwork] } })) {
      await engine.getNetwork(network.Id).remove().catch(() => undefined);
    }
  });

  async function provisioned(project: { projectId: string; slug: string }): Promise<string> {
    await rpc.database("ensure", project, h.tokens.deployer);
    const { database } = await rpc.database("getDatabase", { projectId: project.projectId }, h.tokens.deployer);
    const { databaseUrl } = await rpc.database("getConnection", { projectId: project.projectId }, h.tokens.deployer);
    // The published loopback port: the test talks only to 127.0.0.1.
    const url = new URL(databaseUrl);
    const published = await engine.getContainer(`sota-pgbouncer-${project.slug}`).inspect();
    const binding = published.NetworkSettings.Ports[PORT_KEY]?.find((b) => b.HostIp === "127.0.0.1");
    expect(binding, `no loopback binding for ${database.host}`).toBeDefined();
    url.hostname = "127.0.0.1";
    url.port = binding!.HostPort;
    await queryUrl(url.toString(), "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)");
    return url.toString();
  }

  it("a volume emptied while its server was stopped: the image's entrypoint makes a new cluster, the service refuses it", async () => {
    const url = await provisioned(emptied);
    const postgres = engine.getContainer(`sota-db-${emptied.slug}`);
    await postgres.stop();
    const wiper = await engine.createContainer({
      Image: TEST_POSTGRES_IMAGE,
      Entrypoint: ["sh", "-c", "rm -rf /volume/* /volume/.[!.]*"],
      Cmd: [],
      HostConfig: { Binds: [`sota-db-${emptied.slug}-data:/volume`], Runtime: "runc", NetworkMode: "none" },
    });
    try {
      await wiper.start();
      expect(((await wiper.wait()) as { StatusCode: number }).StatusCode).toBe(0);
    } finally {
      await wiper.remove({ force: true, v: true }).catch(() => undefined);
    }
    await afterLoss(rpc, h, emptied.projectId, url);
  });

  it("a removed container and volume: Ensure makes no new volume", async () => {
    const url = await provisioned(removed);
    await engine.getContainer(`sota-db-${removed.slug}`).remove({ force: true });
    await engine.getVolume(`sota-db-${removed.slug}-data`).remove();
    await afterLoss(rpc, h, removed.projectId, url);
    const volumes = await engine.listVolumes({ filters: { name: [`sota-db-${removed.slug}-data`] } });
    expect(volumes.Volumes ?? []).toEqual([]);
  });
});
