// Issue 9, item 4: a local process must not take a project's pooler port and
// collect the app's password (the URL says sslmode=disable, and libpq answers
// a cleartext password request). Process runtime, where the port is on the
// host's 127.0.0.1.
//   (a) While the service runs, PgBouncer dies and is restarted; an attacker
//       tries all along to bind the port: it never gets it.
//   (b) While the service is down, the attacker binds the port and poses as
//       PostgreSQL. The service comes back: Ensure fails and names the port,
//       readiness and a metric name the database, an error-level line is
//       logged, and none of the service's own checks talks to the attacker.
//   (c) The same through the whole service, whose start-up brings every
//       database back: the database is reported failed, and /readyz names
//       it while the service stays ready for every other tenant.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomUUID } from "node:crypto";
import { Metrics } from "../../src/metrics.js";
import { instancePaths } from "../../src/runtime/process/instance/instance-paths.js";
import type { ProcessRuntime } from "../../src/runtime/process/index.js";
import type { DatabaseSpec, EnsureResult } from "../../src/runtime/runtime.js";
import { readiness } from "../../src/server/readiness.js";
import { SqliteStore } from "../../src/store/sqlite-store.js";
import { startHarness, type Harness } from "../support/app-harness.js";
import { PasswordTrap, tryToBind } from "../support/pooler-attacks.js";
import { processTestBed, removeDataDir, type ProcessTestBed } from "../support/process-runtime-harness.js";
import { appQuery, eventually, newSpec, processesUnder } from "../runtime/process-helpers.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";

/** Bind attempts at the most, about a millisecond apart: a bounded attack that outlasts a PgBouncer restart. */
const MAX_ATTEMPTS = 20_000;

function pgbouncerPids(dir: string): number[] {
  return processesUnder(dir).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "pgbouncer";
    } catch {
      return false;
    }
  });
}

interface LogLine {
  level: number;
  msg: string;
  slug?: string;
  [key: string]: unknown;
}

function logLines(text: string): LogLine[] {
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as LogLine);
}

describe("pooler port squatting: process runtime", () => {
  let bed: ProcessTestBed;
  let runtime: ProcessRuntime | undefined;
  let spec: DatabaseSpec;
  let result: EnsureResult;
  let port: number;
  const trap = new PasswordTrap();

  beforeAll(async () => {
    bed = await processTestBed(32);
    runtime = await bed.open();
    spec = newSpec("squat");
    result = await runtime.ensure(spec);
    port = result.endpoint.port;
  });

  afterAll(async () => {
    await trap.close();
    await runtime?.close();
    if (bed) await removeDataDir(bed.dataDir);
  });

  it("(a) keeps the port while PgBouncer dies and is restarted", async () => {
    const dir = instancePaths(bed.dataDir, spec.slug).dir;
    const [before] = pgbouncerPids(dir);
    expect(before).toBeDefined();
    let stop = false;
    let attempts = 0;
    let taken = 0;
    const attacker = (async () => {
      while (!stop && attempts < MAX_ATTEMPTS) {
        attempts += 1;
        if (await tryToBind(port)) taken += 1;
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    })();
    try {
      process.kill(before!, "SIGKILL");
      // The supervisor brings a new PgBouncer up, and the app gets through it.
      await eventually(async () => {
        const [after] = pgbouncerPids(dir);
        if (after === undefined || after === before) throw new Error("no new PgBouncer yet");
        await appQuery(result, spec);
      });
    } finally {
      stop = true;
      await attacker;
    }
    expect(attempts).toBeGreaterThan(10);
    expect(taken).toBe(0);
  });

  it("(b) while the service was down: Ensure fails, readiness, a metric and the log say so, no check talks to the squatter", async () => {
    await runtime!.close();
    runtime = undefined;
    await trap.listen(port);

    runtime = await bed.open();
    const store = new SqliteStore(join(bed.dataDir, "state.db"));
    const metrics = new Metrics({ defaultMetrics: false });
    metrics.watchPoolerPorts(runtime);
    try {
      const failure = await runtime.ensure(spec).then(
        () => undefined,
        (error: unknown) => error as Error,
      );
      expect(failure?.message).toMatch(new RegExp(`pooler port ${port} of ${spec.slug} .*another process`));
      expect(failure?.message).not.toContain(spec.password);

      const report = await readiness(store, runtime)();
      // One squatted port does not take the API away from the other tenants.
      expect(report.ready).toBe(true);
      expect(report.checks["pooler_ports"]?.ok).toBe(false);
      expect(report.checks["pooler_ports"]?.error).toContain(`${spec.slug} (port ${port})`);

      expect(await metrics.registry.metrics()).toContain(`sota_pooler_port_lost{slug="${spec.slug}"} 1`);

      const errors = logLines(bed.logs.text()).filter((line) => line.level >= 50 && line.slug === spec.slug);
      expect(errors.map((line) => line.msg).join("\n")).toMatch(new RegExp(`pooler port ${port} .*another process`));
      expect(bed.logs.text()).not.toContain(spec.password);

      // Nothing of the service connected to the squatter, let alone sent it a password.
      expect(trap.connections).toBe(0);
      expect(trap.passwordsReceived).toBe(0);

      // Once the port is free again, the next Ensure takes it back and all is well.
      await trap.close();
      const again = await runtime.ensure(spec);
      expect(again.endpoint.port).toBe(port);
      await appQuery(again, spec);
      expect((await readiness(store, runtime)()).checks["pooler_ports"]?.ok).toBe(true);
      expect(await metrics.registry.metrics()).not.toContain(`slug="${spec.slug}"`);
    } finally {
      await store.close();
    }
  });
});

describe("pooler port squatting: the whole service, process runtime", () => {
  let harness: Harness | undefined;
  const trap = new PasswordTrap();

  afterAll(async () => {
    await trap.close();
    await harness?.stop();
  });

  it("(c) a restart with the port squatted reports the database failed and names it in /readyz", async () => {
    // This file's own range (offset 33 of the test beds').
    harness = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(47) });
    const projectId = randomUUID();
    const { database } = await harness.app.service.ensure(projectId, "squat-app");
    const port = database.port!;
    const url = (await harness.app.service.connection(projectId)).url;

    await harness.app.close();
    await trap.listen(port);
    const app = await harness.start();

    // Start-up tried to bring it back, and gave up without talking to the squatter.
    expect((await app.service.get(projectId)).state).toBe("failed");
    await expect(app.service.ensure(projectId, "")).rejects.toThrow(new RegExp(`pooler port ${port} of squat-app .*another process`));
    expect((await app.service.get(projectId)).state).toBe("failed");
    const ready = await fetch(`${app.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(JSON.stringify(await ready.json())).toContain(`squat-app (port ${port})`);
    expect(await app.metrics.registry.metrics()).toContain(`sota_pooler_port_lost{slug="squat-app"} 1`);
    const errors = logLines(harness.logs.join("")).filter((line) => line.level >= 50 && line.slug === "squat-app");
    expect(errors.length).toBeGreaterThan(0);
    expect(trap.connections).toBe(0);
    expect(trap.passwordsReceived).toBe(0);
    expect(harness.logs.join("")).not.toContain(new URL(url).password);

    await trap.close();
    expect((await app.service.ensure(projectId, "")).database.state).toBe("ready");
    expect(JSON.stringify(await (await fetch(`${app.url}/readyz`)).json())).not.toContain("squat-app");
  });
});
