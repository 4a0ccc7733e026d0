// Point-in-time restore and clone through the service's front door on the
// Docker runtime (SOTA_RUNTIME=docker, as `npm start` composes it): the
// receiver beside each database, base backups taken by the service, a
// restore to a second between two commits behind the same DATABASE_URL, a
// clone, and a database whose volume was destroyed brought back to its last
// commit. The test reaches the databases only through PgBouncer's port
// published on 127.0.0.1.
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PORT_KEY } from "../../src/runtime/docker/docker-names.js";
import { startHarness, type Harness } from "../support/app-harness.js";
import { dockerServiceEnv, DockerTestBed, dockerTestsRun, removeProjectObjects } from "../support/docker-test-bed.js";
import { grpc, grpcClients, grpcCode, type GrpcClients } from "../support/grpc-client.js";
import { commitThenTime, connectionUrl, numbers, recordingRest, windowOf } from "../support/pitr-api.js";
import { queryUrl } from "../support/url-query.js";

const docker = await dockerTestsRun("Docker point-in-time restore tests");

describe.skipIf(!docker.run)("point-in-time restore and clone on the Docker runtime", () => {
  const bed = new DockerTestBed();
  const engine = new Docker();
  let h: Harness;
  let rpc: GrpcClients;
  const answers: string[] = [];
  const call = recordingRest(() => h, answers);
  const shop = randomUUID();
  const copy = randomUUID();
  const lost = randomUUID();
  const passwords: string[] = [];

  /** The project's DATABASE_URL, and the same through PgBouncer's loopback port (what this test uses). */
  async function urls(projectId: string, slug: string): Promise<{ url: string; loopback: string }> {
    const url = await connectionUrl(h, projectId);
    passwords.push(new URL(url).password);
    const published = await engine.getContainer(`sota-pgbouncer-${slug}`).inspect();
    const binding = published.NetworkSettings.Ports[PORT_KEY]?.find((candidate) => candidate.HostIp === "127.0.0.1");
    expect(binding).toBeDefined();
    const loopback = new URL(url);
    loopback.hostname = "127.0.0.1";
    loopback.port = binding!.HostPort;
    return { url, loopback: loopback.toString() };
  }

  beforeAll(async () => {
    h = await startHarness(await dockerServiceEnv(docker.engine, { SOTA_DOCKER_NETWORK: bed.appNetwork, SOTA_DOCKER_PUBLISH_HOST: "127.0.0.1", SOTA_BACKUP_MIN_FREE: "0" }));
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
  });

  afterAll(async () => {
    rpc?.close();
    await h?.stop();
    for (const projectId of [shop, copy, lost]) await removeProjectObjects(projectId);
    for (const network of await engine.listNetworks({ filters: { name: [bed.appNetwork] } })) await engine.getNetwork(network.Id).remove().catch(() => undefined);
  });

  let shopUrls: { url: string; loopback: string };
  let betweenTwoAndThree: Date;

  it("restores to a second between two commits, behind the same DATABASE_URL", async () => {
    expect((await call(`/v1/projects/${shop}/database`, { method: "POST", body: { slug: `shop-${bed.runId}` } })).status).toBe(200);
    shopUrls = await urls(shop, `shop-${bed.runId}`);
    expect((await windowOf(h, shop)).streaming).toBe(true);
    await queryUrl(shopUrls.loopback, "CREATE TABLE events (n int PRIMARY KEY); INSERT INTO events VALUES (1)");
    betweenTwoAndThree = await commitThenTime(shopUrls.loopback, "INSERT INTO events VALUES (2)");
    await queryUrl(shopUrls.loopback, "INSERT INTO events VALUES (3)");
    const restored = await call(`/v1/projects/${shop}/database/backups/-/restore`, { method: "POST", body: { targetTime: betweenTwoAndThree.toISOString() } });
    expect(restored.status, restored.text).toBe(200);
    expect(await numbers(shopUrls.loopback)).toEqual([1, 2]);
    expect(await connectionUrl(h, shop)).toBe(shopUrls.url);
  });

  it("clones the source as it was at that second into a database of its own", async () => {
    const slug = `copy-${bed.runId}`;
    const cloned = await call(`/v1/projects/${copy}/database/clone`, {
      method: "POST",
      body: { sourceProjectId: shop, targetTime: betweenTwoAndThree.toISOString(), slug },
    });
    expect(cloned.status, cloned.text).toBe(200);
    expect(cloned.json.database).toMatchObject({ projectId: copy, slug, state: "DATABASE_STATE_READY", user: `app_${slug}` });
    const copyUrls = await urls(copy, slug);
    expect(await numbers(copyUrls.loopback)).toEqual([1, 2]);
    await queryUrl(copyUrls.loopback, "INSERT INTO events VALUES (100)");
    expect(await numbers(shopUrls.loopback)).toEqual([1, 2]);
  });

  it("brings back a database whose container and volume were destroyed, to its last commit", async () => {
    const slug = `lost-${bed.runId}`;
    expect((await call(`/v1/projects/${lost}/database`, { method: "POST", body: { slug } })).status).toBe(200);
    const lostUrls = await urls(lost, slug);
    await windowOf(h, lost);
    await queryUrl(lostUrls.loopback, "CREATE TABLE events (n int PRIMARY KEY); INSERT INTO events VALUES (1), (2)");
    await queryUrl(lostUrls.loopback, "INSERT INTO events VALUES (3)");
    await sleep(1_000);
    await engine.getContainer(`sota-db-${slug}`).remove({ force: true, v: true });
    await engine.getVolume(`sota-db-${slug}-data`).remove();
    expect(await grpcCode(rpc.database("ensure", { projectId: lost }, h.tokens.deployer))).toBe(grpc.status.DATA_LOSS);
    const failed = (await call(`/v1/projects/${lost}/database`)).json;
    expect(failed.database.state).toBe("DATABASE_STATE_FAILED");
    expect(failed.recoveryWindow).toBeDefined();
    const restored = await call(`/v1/projects/${lost}/database/backups/-/restore`, { method: "POST", body: { targetTime: failed.recoveryWindow.latestTime } });
    expect(restored.status, restored.text).toBe(200);
    expect((await call(`/v1/projects/${lost}/database`)).json.database).toMatchObject({ state: "DATABASE_STATE_READY" });
    // The same DATABASE_URL; PgBouncer, stopped while the data was lost, came back on another loopback port.
    const back = await urls(lost, slug);
    expect(back.url).toBe(lostUrls.url);
    expect(await numbers(back.loopback)).toEqual([1, 2, 3]);
  });

  it("never puts a password or a DATABASE_URL in an answer or a log line", () => {
    const all = [...answers, ...h.logs].join("\n");
    for (const password of passwords) expect(all).not.toContain(password);
    expect(all).not.toContain("postgresql://");
  });
});
