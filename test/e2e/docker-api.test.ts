// The service as production runs it (SOTA_RUNTIME=docker), through its API:
// the product spec's DATABASE_URL, used by an app container on the app network, and
// what callers see when the Docker engine is gone.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";
import { grpcClients, type GrpcClients } from "../support/grpc-client.js";
import { dockerServiceEnv, DockerTestBed, dockerTestsRun, serviceObjectsCleanup } from "../support/docker-test-bed.js";

const { run, engine } = await dockerTestsRun("Docker API tests");

describe("Docker engine unreachable", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ SOTA_RUNTIME: "docker", DOCKER_HOST: "unix:///nonexistent/docker.sock" });
  });
  afterAll(async () => h?.stop());

  it("stays up, says so in /readyz, and answers Ensure with Unavailable", async () => {
    expect((await fetch(`${h.app.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${h.app.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ checks: { runtime: { ok: false } } });
    const ensure = await fetch(`${h.app.url}/v1/projects/${randomUUID()}/database`, {
      method: "POST",
      headers: { authorization: `Bearer ${h.tokens.admin}` },
    });
    expect(ensure.status).toBe(503);
    expect(await ensure.json()).toMatchObject({ code: "unavailable" });
    expect((await fetch(`${h.app.url}/healthz`)).status).toBe(200);
  });
});

describe.skipIf(!run)("the service on the Docker runtime", () => {
  const bed = new DockerTestBed();
  const projectId = randomUUID();
  const slug = `e2e-${bed.runId}`;
  let h: Harness;
  let rpc: GrpcClients;
  let cleanup: ((projectIds: readonly string[]) => Promise<void>) | undefined;

  beforeAll(async () => {
    const env = await dockerServiceEnv(engine, { SOTA_DOCKER_NETWORK: bed.appNetwork });
    cleanup = await serviceObjectsCleanup(bed.appNetwork);
    h = await startHarness(env);
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
  });

  afterAll(async () => {
    rpc?.close();
    await h?.stop();
    // The service labels what it creates with the project id; remove by it.
    await cleanup?.([projectId]);
  });

  it("Ensure gives the product spec's DATABASE_URL, and an app container on the reported network uses it", async () => {
    const ensured = await rpc.database("ensure", { projectId, slug }, h.tokens.deployer);
    expect(ensured.database).toMatchObject({ state: "DATABASE_STATE_READY", runtime: "docker", host: `sota-pgbouncer-${slug}`, port: 5432, network: bed.appNetwork });
    expect(ensured.database.postgresVersion).toMatch(/^17\./);
    expect(ensured.database.pooler).toMatchObject({ poolMode: "transaction", defaultPoolSize: 20, maxClientConn: 100, preparedStatementsSupported: true });
    const { databaseUrl } = await rpc.database("getConnection", { projectId }, h.tokens.deployer);
    expect(databaseUrl).toMatch(new RegExp(`^postgresql://app_${slug}:[0-9a-f]{32}@sota-pgbouncer-${slug}:5432/${slug}\\?sslmode=disable$`));

    const app = await bed.runClient(
      ensured.database.network,
      `psql "$DATABASE_URL" -X -A -t -c "CREATE TABLE t (v int); INSERT INTO t VALUES (7); SELECT current_user || ':' || sum(v) FROM t"`,
      [`DATABASE_URL=${databaseUrl}`],
    );
    expect(app.exitCode, app.output).toBe(0);
    expect(app.output).toContain(`app_${slug}:7`);

    const again = await rpc.database("ensure", { projectId }, h.tokens.deployer);
    expect(again.created).toBe(false);
    expect((await rpc.database("getConnection", { projectId }, h.tokens.deployer)).databaseUrl).toBe(databaseUrl);
    expect(h.logs.join("")).not.toContain(new URL(databaseUrl).password);
  });

  it("takes a backup through docker exec pg_dump", async () => {
    const { backup } = await rpc.database("createBackup", { projectId, wait: true }, h.tokens.deployer);
    expect(backup).toMatchObject({ state: "BACKUP_STATE_SUCCEEDED", kind: "BACKUP_KIND_MANUAL" });
    expect(Number(backup.sizeBytes)).toBeGreaterThan(0);
  });
});
