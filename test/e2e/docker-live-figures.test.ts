// Live figures (issue 11, item 6) on the Docker runtime: GetDatabase's usage
// and /metrics' per-database figures read through `docker exec` (PgBouncer's
// console and PostgreSQL inside their containers), with an app container on
// the app network holding real client connections.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";
import { grpcClients, type GrpcClients } from "../support/grpc-client.js";
import { dockerServiceEnv, DockerTestBed, dockerTestsRun, serviceObjectsCleanup } from "../support/docker-test-bed.js";

const { run, engine } = await dockerTestsRun("Docker live-figures tests");

describe.skipIf(!run)("live figures on the Docker runtime", () => {
  const bed = new DockerTestBed();
  const projectId = randomUUID();
  const slug = `fig-${bed.runId}`;
  let h: Harness;
  let rpc: GrpcClients;
  let cleanup: ((projectIds: readonly string[]) => Promise<void>) | undefined;

  beforeAll(async () => {
    const env = await dockerServiceEnv(engine, { SOTA_DOCKER_NETWORK: bed.appNetwork });
    cleanup = await serviceObjectsCleanup(bed.appNetwork);
    h = await startHarness(env);
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
    await rpc.database("ensure", { projectId, slug }, h.tokens.deployer);
  });

  afterAll(async () => {
    rpc?.close();
    await h?.stop();
    await cleanup?.([projectId]);
    await bed.cleanup();
  });

  it("GetDatabase and /metrics count the connections an app container holds, and its data", async () => {
    const { databaseUrl } = await rpc.database("getConnection", { projectId }, h.tokens.deployer);
    const idle = await rpc.database("getDatabase", { projectId }, h.tokens.admin);
    expect(idle.usageUnavailable).toBe("");
    expect(idle.usage).toMatchObject({ maxClientConnections: 100, poolSize: 20 });
    const sizeBefore = Number(idle.usage.sizeBytes);
    expect(sizeBefore).toBeGreaterThan(1_000_000);

    // Three sessions, each in a transaction for a while (so each holds a server connection), plus some data.
    const app = bed.runClient(
      bed.appNetwork,
      `psql "$DATABASE_URL" -X -q -c "CREATE TABLE filler AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 8000) AS g" &&
       for i in 1 2 3; do psql "$DATABASE_URL" -X -q -c "BEGIN; SELECT pg_sleep(15); COMMIT" & done; wait`,
      [`DATABASE_URL=${databaseUrl}`],
    );
    let busy: any;
    for (let attempt = 0; attempt < 60; attempt++) {
      busy = await rpc.database("getDatabase", { projectId }, h.tokens.admin);
      if (busy.usage?.serverConnectionsActive >= 3) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(busy.usage.clientConnectionsActive).toBe(3);
    expect(busy.usage.serverConnectionsActive).toBe(3);
    expect(Number(busy.usage.sizeBytes) - sizeBefore).toBeGreaterThan(4_000_000);

    const scraped = await (await fetch(`${h.app.url}/metrics`, { headers: { authorization: `Bearer ${h.tokens.admin}` } })).text();
    expect(scraped).toContain(`sota_database_up{project_id="${projectId}"} 1`);
    expect(scraped).toMatch(new RegExp(`sota_pooler_transactions_total\\{project_id="${projectId}"\\} [1-9]`));
    expect(scraped).not.toContain(new URL(databaseUrl).password);

    const finished = await app;
    expect(finished.exitCode, finished.output).toBe(0);
  });
});
