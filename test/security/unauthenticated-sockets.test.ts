// Issue 9, item 5: sockets that never log in must not lock a tenant out of its
// pooler. A local process opens more idle connections to a project's PgBouncer
// than max_client_conn allows, without any password; PgBouncer must drop them
// within seconds (client_login_timeout), after which the app connects and
// queries with its own credentials. Process runtime, and the Docker runtime
// with PgBouncer published on 127.0.0.1 (skipped without an engine).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DatabaseSpec, EnsureResult, Runtime } from "../../src/runtime/runtime.js";
import { MAX_CLIENT_CONN } from "../../src/runtime/shared/pgbouncer-settings.js";
import { DockerTestBed, ensureTestImages, probeDockerEngine , describeWithDocker } from "../support/docker-test-bed.js";
import { openIdleSockets } from "../support/pooler-attacks.js";
import { processTestBed, removeDataDir, type ProcessTestBed } from "../support/process-runtime-harness.js";
import { newSpec } from "../runtime/process-helpers.js";
import { withApp } from "../runtime/runtime-contract.js";

/** More than the pooler admits, so every client slot is taken. */
const ATTACK_SOCKETS = MAX_CLIENT_CONN + 20;
/** App attempts, 250 ms apart: about 12 s, well past a few seconds of login timeout, well short of PgBouncer's 60 s default. */
const APP_ATTEMPTS = 48;

async function appQuery(result: EnsureResult, spec: DatabaseSpec): Promise<void> {
  await withApp(result, spec, async (client) => expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]));
}

/** Retries the app's query a bounded number of times, 250 ms apart, until it works; throws the last error. */
async function appGetsIn(result: EnsureResult, spec: DatabaseSpec): Promise<void> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= APP_ATTEMPTS; attempt += 1) {
    try {
      return await appQuery(result, spec);
    } catch (error) {
      lastError = error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  throw lastError;
}

/** Until PgBouncer has taken the idle sockets in (a bounded number of tries): the app is refused. */
async function appLockedOut(result: EnsureResult, spec: DatabaseSpec): Promise<string> {
  for (let attempt = 1; attempt <= 50; attempt += 1) {
    try {
      await appQuery(result, spec);
    } catch (error) {
      return (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return "never refused";
}

function describeAttack(open: () => Promise<{ runtime: Runtime; spec: DatabaseSpec }>): void {
  let runtime: Runtime;
  let spec: DatabaseSpec;
  let result: EnsureResult;

  beforeAll(async () => {
    ({ runtime, spec } = await open());
    result = await runtime.ensure(spec);
  });

  it(`drops ${ATTACK_SOCKETS} sockets that never log in, and the app gets in`, async () => {
    const port = result.endpoint.loopback!.port;
    const idle = await openIdleSockets(port, ATTACK_SOCKETS);
    try {
      // At first the attack works: every client slot is taken.
      expect(await appLockedOut(result, spec)).toMatch(/max_client_conn/);
      await appGetsIn(result, spec);
      // PgBouncer took them all as clients in their login phase, and drops them all.
      for (let wait = 0; wait < 40 && idle.closedByServer() < ATTACK_SOCKETS; wait += 1) {
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(idle.closedByServer()).toBe(ATTACK_SOCKETS);
    } finally {
      idle.destroy();
    }
  });
}

describe("unauthenticated sockets: process runtime", () => {
  let bed: ProcessTestBed;
  let runtime: Runtime | undefined;

  afterAll(async () => {
    await runtime?.close();
    if (bed) await removeDataDir(bed.dataDir);
  });

  describeAttack(async () => {
    bed = await processTestBed(30);
    runtime = await bed.open();
    return { runtime, spec: newSpec("unauth") };
  });
});

const engine = await probeDockerEngine();
describeWithDocker("unauthenticated sockets: Docker runtime", engine, () => {
  describe("unauthenticated sockets: Docker runtime", () => {
    const bed = new DockerTestBed();
    let runtime: Runtime | undefined;

    afterAll(async () => {
      await runtime?.close();
      await bed.cleanup();
    });

    describeAttack(async () => {
      await ensureTestImages();
      // Published on 127.0.0.1, where a local process reaches it.
      runtime = bed.runtime({ publishHost: "127.0.0.1" });
      return { runtime, spec: newSpec(`unauth-${bed.runId}`) };
    });
  });
});
