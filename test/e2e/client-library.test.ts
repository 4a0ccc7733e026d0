// "sota-db/client" as another project uses it: imported by package name
// (through package.json "exports"), Ensure then GetConnection over both
// transports, and a separate consumer project that depends on sota-db and
// runs with tsx, against a running service with real PostgreSQL + PgBouncer.
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, DatabaseState, createDatabaseClient } from "sota-db/client";
import { startHarness, type Harness } from "../support/app-harness.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";

const run = promisify(execFile);
const REPO = fileURLToPath(new URL("../..", import.meta.url));

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(41) });
});

afterAll(async () => {
  await h?.stop();
});

describe.each(["connect", "grpc"] as const)("createDatabaseClient, transport %s", (transport) => {
  it("ensures a database and gets a URL that PostgreSQL accepts", async () => {
    const client = createDatabaseClient({ baseUrl: h.app.url, token: h.tokens.deployer, transport });
    const projectId = randomUUID();
    const ensured = await client.ensure({ projectId });
    expect(ensured.database?.projectId).toBe(projectId);
    expect(ensured.database?.state).toBe(DatabaseState.READY);
    const { databaseUrl } = await client.getConnection({ projectId });
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      expect((await db.query("select 1 as one")).rows).toEqual([{ one: 1 }]);
    } finally {
      await db.end();
    }
  });

  it("surfaces the server's refusal as a ConnectError with its code", async () => {
    const client = createDatabaseClient({ baseUrl: h.app.url, token: "not-a-known-token", transport });
    const error = await client.ensure({ projectId: randomUUID() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.Unauthenticated);
    expect(String(error)).not.toContain("not-a-known-token");
  });
});

it("works from another project that depends on sota-db and runs with tsx", async () => {
  const consumer = mkdtempSync(join(tmpdir(), "sota-client-consumer-"));
  try {
    writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "deploy-engine", type: "module", dependencies: { "sota-db": "*" } }));
    mkdirSync(join(consumer, "node_modules"));
    symlinkSync(REPO, join(consumer, "node_modules", "sota-db"), "dir");
    writeFileSync(
      join(consumer, "deploy.ts"),
      [
        `import { createDatabaseClient } from "sota-db/client";`,
        `const client = createDatabaseClient({ baseUrl: process.env.SOTA_URL!, token: process.env.SOTA_TOKEN! });`,
        `const projectId = process.env.PROJECT_ID!;`,
        `const { database } = await client.ensure({ projectId });`,
        `const { databaseUrl } = await client.getConnection({ projectId });`,
        `console.log(JSON.stringify({ projectId: database?.projectId, url: databaseUrl.startsWith("postgresql://") }));`,
      ].join("\n"),
    );
    const projectId = randomUUID();
    const tsx = fileURLToPath(import.meta.resolve("tsx"));
    const { stdout } = await run(process.execPath, ["--import", tsx, "deploy.ts"], {
      cwd: consumer,
      env: { ...process.env, SOTA_URL: h.app.url, SOTA_TOKEN: h.tokens.deployer, PROJECT_ID: projectId },
      timeout: 120_000,
    });
    expect(JSON.parse(stdout)).toEqual({ projectId, url: true });
  } finally {
    rmSync(consumer, { recursive: true, force: true });
  }
});
