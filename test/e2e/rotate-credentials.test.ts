// RotateCredentials end to end, through a real gRPC client and the REST path,
// against real PostgreSQL + PgBouncer: a new 32-hex password and DATABASE_URL;
// connections already open keep working (even once PgBouncer must open a new
// server connection for them); new connections with the old password are
// refused as soon as the call returns; no password reaches a log or a metric.
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import Docker from "dockerode";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";
import { dockerServiceEnv, DockerTestBed, dockerTestsRun, removeProjectObjects } from "../support/docker-test-bed.js";
import { grpc, grpcClients, grpcCode, type GrpcClients } from "../support/grpc-client.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";

async function connected(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  // A restart of the pooler ends it; the test asks it directly when it cares.
  client.on("error", () => undefined);
  await client.connect();
  return client;
}

async function selectOne(url: string): Promise<number> {
  const client = await connected(url);
  try {
    return (await client.query("SELECT 1 AS one")).rows[0].one;
  } finally {
    await client.end();
  }
}

describe("RotateCredentials on the process runtime", () => {
  let h: Harness;
  let rpc: GrpcClients;
  const projectId = randomUUID();
  const slug = "rotating-shop";
  const target = { projectId, slug };
  const secrets: string[] = [];
  const open: pg.Client[] = [];

  beforeAll(async () => {
    h = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(43) });
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
    secrets.push(...Object.values(h.tokens));
    await rpc.database("ensure", { projectId, slug }, h.tokens.deployer);
  });

  afterAll(async () => {
    for (const client of open) await client.end().catch(() => undefined);
    rpc?.close();
    await h?.stop();
  });

  it("refuses a project token (PERMISSION_DENIED, 403) and changes nothing", async () => {
    const before = (await rpc.database("getConnection", { projectId }, h.tokens.deployer)).databaseUrl;
    expect(await grpcCode(rpc.database("rotateCredentials", { projectId }, h.tokens.project))).toBe(grpc.status.PERMISSION_DENIED);
    const response = await fetch(`${h.app.url}/v1/projects/${projectId}/database/credentials/rotate`, {
      method: "POST",
      headers: { authorization: `Bearer ${h.tokens.project}` },
    });
    expect(response.status).toBe(403);
    expect((await rpc.database("getConnection", { projectId }, h.tokens.deployer)).databaseUrl).toBe(before);
    expect(await selectOne(before)).toBe(1);
  });

  it("REST rotate returns a new URL; open connections keep working, the old password is refused at once", async () => {
    const oldUrl = (await rpc.database("getConnection", { projectId }, h.tokens.deployer)).databaseUrl;
    secrets.push(oldUrl, new URL(oldUrl).password);
    const survivor = await connected(oldUrl);
    open.push(survivor);
    await survivor.query("CREATE TABLE IF NOT EXISTS visits (n int)");

    const response = await fetch(`${h.app.url}/v1/projects/${projectId}/database/credentials/rotate`, {
      method: "POST",
      headers: { authorization: `Bearer ${h.tokens.deployer}` },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as any;
    const newUrl: string = body.databaseUrl;
    secrets.push(newUrl, new URL(newUrl).password);
    expect(newUrl).toMatch(new RegExp(`^postgresql://app_${slug}:[0-9a-f]{32}@127\\.0\\.0\\.1:${new URL(oldUrl).port}/${slug}\\?sslmode=disable$`));
    expect(new URL(newUrl).password).not.toBe(new URL(oldUrl).password);
    expect(body.database.state).toBe("DATABASE_STATE_READY");

    // Once the call has returned: the new URL works, the old one is refused.
    expect(await selectOne(newUrl)).toBe(1);
    await expect(selectOne(oldUrl)).rejects.toThrow(/authentication failed/);

    // The connection opened before the rotation still works...
    await survivor.query("INSERT INTO visits VALUES (1)");
    // ...also once PgBouncer has to open a new server connection for it.
    await h.app.runtime.adminQuery(target, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app_${slug}'`);
    await h.app.runtime.poolerCommand(target, "RECONNECT");
    let inserted = false;
    for (let attempt = 0; attempt < 3 && !inserted; attempt++) {
      // PgBouncer may hand out a server connection it has not yet seen die: that one query fails, the next gets a new one.
      inserted = await survivor.query("INSERT INTO visits VALUES (2)").then(
        () => true,
        () => false,
      );
    }
    expect(inserted).toBe(true);
    expect((await survivor.query("SELECT count(*)::int AS n FROM visits")).rows[0].n).toBeGreaterThanOrEqual(2);

    // GetConnection gives the new URL: the old sealed one was replaced.
    expect((await rpc.database("getConnection", { projectId }, h.tokens.deployer)).databaseUrl).toBe(newUrl);
    // Ensure (every deploy) keeps the rotated password.
    await rpc.database("ensure", { projectId }, h.tokens.deployer);
    expect((await rpc.database("getConnection", { projectId }, h.tokens.deployer)).databaseUrl).toBe(newUrl);
  });

  it("gRPC rotate again gives yet another password; a restart keeps the latest", async () => {
    const before = (await rpc.database("getConnection", { projectId }, h.tokens.deployer)).databaseUrl;
    const rotated = await rpc.database("rotateCredentials", { projectId }, h.tokens.admin);
    secrets.push(rotated.databaseUrl, new URL(rotated.databaseUrl).password);
    expect(rotated.databaseUrl).not.toBe(before);
    await h.restart();
    rpc.close();
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
    expect(await selectOne(rotated.databaseUrl)).toBe(1);
    await expect(selectOne(before)).rejects.toThrow(/authentication failed/);
  });

  it("refuses a grace period (UNIMPLEMENTED, saying why), bad ids and unknown projects, changing nothing", async () => {
    const before = (await rpc.database("getConnection", { projectId }, h.tokens.deployer)).databaseUrl;
    try {
      await rpc.database("rotateCredentials", { projectId, graceSeconds: 60 }, h.tokens.deployer);
      expect.unreachable();
    } catch (error) {
      expect((error as grpc.ServiceError).code).toBe(grpc.status.UNIMPLEMENTED);
      expect((error as grpc.ServiceError).details).toMatch(/one password per role/);
    }
    expect(await grpcCode(rpc.database("rotateCredentials", { projectId, graceSeconds: -1 }, h.tokens.deployer))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await grpcCode(rpc.database("rotateCredentials", { projectId: "nope" }, h.tokens.deployer))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await grpcCode(rpc.database("rotateCredentials", { projectId: randomUUID() }, h.tokens.deployer))).toBe(grpc.status.NOT_FOUND);
    expect((await rpc.database("getConnection", { projectId }, h.tokens.deployer)).databaseUrl).toBe(before);
  });

  it("never writes a password, URL or token to the log or /metrics", async () => {
    const metrics = await (await fetch(`${h.app.url}/metrics`, { headers: { authorization: `Bearer ${h.tokens.admin}` } })).text();
    const logs = h.logs.join("");
    for (const secret of secrets) {
      expect(logs).not.toContain(secret);
      expect(metrics).not.toContain(secret);
    }
    expect(logs).toContain("credentials rotated");
  });
});

const docker = await dockerTestsRun("Docker rotate tests");

describe.skipIf(!docker.run)("RotateCredentials on the Docker runtime", () => {
  const bed = new DockerTestBed();
  const projectId = randomUUID();
  const slug = `rot-${bed.runId}`;
  let h: Harness;
  let rpc: GrpcClients;

  beforeAll(async () => {
    h = await startHarness(
      await dockerServiceEnv(docker.engine, {
        SOTA_DOCKER_NETWORK: bed.appNetwork,
      }),
    );
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
  });

  afterAll(async () => {
    rpc?.close();
    await h?.stop();
    await removeProjectObjects(projectId);
    const engine = new Docker();
    for (const network of await engine.listNetworks({ filters: { name: [bed.appNetwork] } })) {
      await engine.getNetwork(network.Id).remove().catch(() => undefined);
    }
  });

  it("an app container's open connection survives; the new URL works and the old one is refused", async () => {
    const ensured = await rpc.database("ensure", { projectId, slug }, h.tokens.deployer);
    const network = ensured.database.network;
    const { databaseUrl: oldUrl } = await rpc.database("getConnection", { projectId }, h.tokens.deployer);
    // One psql session, open across the rotation: a query before, a long one across, one after.
    const session = bed.runClient(
      network,
      `psql "$DATABASE_URL" -X -A -t -v ON_ERROR_STOP=1 -c "SELECT 'before'" -c "SELECT pg_sleep(8)" -c "SELECT 'after-' || current_user"`,
      [`DATABASE_URL=${oldUrl}`],
    );
    await sleep(3_000);
    const rotated = await rpc.database("rotateCredentials", { projectId }, h.tokens.deployer);
    expect(new URL(rotated.databaseUrl).password).not.toBe(new URL(oldUrl).password);
    const fresh = await bed.runClient(network, `psql "$DATABASE_URL" -X -A -t -c "SELECT 'new-ok'"`, [`DATABASE_URL=${rotated.databaseUrl}`]);
    expect(fresh.output).toContain("new-ok");
    const stale = await bed.runClient(network, `psql "$DATABASE_URL" -X -A -t -c "SELECT 1"`, [`DATABASE_URL=${oldUrl}`]);
    expect(stale.exitCode).not.toBe(0);
    expect(stale.output).toMatch(/authentication failed/);
    const survived = await session;
    expect(survived.exitCode, survived.output).toBe(0);
    expect(survived.output).toContain(`after-app_${slug}`);
    const logs = h.logs.join("");
    expect(logs).not.toContain(new URL(oldUrl).password);
    expect(logs).not.toContain(new URL(rotated.databaseUrl).password);
  });
});
