// The process driver's warm pool against real PostgreSQL and PgBouncer: a new
// database comes from a started, unassigned instance, the pool refills, and
// neither close nor a killed service leaves a process or a port behind.
import { spawn } from "node:child_process";
import { lstatSync, readdirSync, readlinkSync, symlinkSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProcessRuntime } from "../../src/runtime/process/index.js";
import { tryToBind } from "../support/pooler-attacks.js";
import type { EnsureResult } from "../../src/runtime/runtime.js";
import { processTestBed, removeDataDir, type ProcessTestBed } from "../support/process-runtime-harness.js";
import { appQuery, eventually, instanceUser, isAlive, newSpec, postmasterArgs, postmasterPid, processesUnder, readyLine, withApp } from "./process-helpers.js";

const FILL_TIMEOUT_MS = 90_000;
let bedDir: string;

describe("process runtime: warm pool", () => {
  let bed: ProcessTestBed;
  let runtime: ProcessRuntime;
  const spec = newSpec("warm-main");
  let ensured: EnsureResult;
  let firstWarm: string[];

  beforeAll(async () => {
    bed = await processTestBed(8);
    bedDir = bed.dataDir;
    runtime = await bed.open({ warmPool: 2 });
    await runtime.warmPool.whenFull(AbortSignal.timeout(FILL_TIMEOUT_MS));
  });

  afterAll(async () => {
    await runtime?.close();
    if (bed) await removeDataDir(bed.dataDir);
  });

  const warmDir = () => join(bed.dataDir, "warm");
  /** Warm copies: directories (a taken one leaves a symlink under its name while its postmaster runs). */
  const warmEntries = async () => (await readdir(warmDir())).filter((id) => !isAlias(id)).sort();
  const isAlias = (id: string) => lstatSync(join(warmDir(), id)).isSymbolicLink();

  it("keeps the configured number of started, unassigned instances", async () => {
    expect(runtime.warmPool.size).toBe(2);
    expect(runtime.warmPool.ready).toBe(2);
    firstWarm = await warmEntries();
    expect(firstWarm).toHaveLength(2);
    for (const id of firstWarm) {
      const pid = await postmasterPid(join(warmDir(), id, "pgdata"));
      expect(isAlive(pid)).toBe(true);
    }
    expect(processesUnder(join(bed.dataDir, "instances"))).toEqual([]);
  });

  it("ensure takes a warm instance and gives a working database with the project's role and name", async () => {
    ensured = await runtime.ensure(spec);
    await withApp(ensured, spec, async (client) => {
      const who = await client.query("SELECT current_user AS role, current_database() AS db");
      expect(who.rows[0]).toEqual({ role: `app_${spec.slug}`, db: spec.slug });
      await client.query("CREATE TABLE notes (body text NOT NULL)");
      await client.query("INSERT INTO notes VALUES ('kept')");
    });
    const ready = readyLine(bed.logs.text(), spec.slug);
    expect(ready?.["source"]).toBe("warm");
    const placeholders = await runtime.adminQuery(
      spec,
      "SELECT (SELECT count(*) FROM pg_database WHERE datname = 'sota_template_app') + (SELECT count(*) FROM pg_roles WHERE rolname = 'sota_template_app') AS n",
    );
    expect(placeholders).toEqual([{ n: "0" }]);
    const taken = firstWarm.filter((id) => isAlias(id));
    expect(taken).toHaveLength(1);
    expect(readlinkSync(join(warmDir(), taken[0]!))).toBe(join(bed.dataDir, "instances", spec.slug));
    expect(await readFile(join(bed.dataDir, "instances", spec.slug, "project-id"), "utf8")).toBe(`${spec.projectId}\n`);
  });

  it("the fast path answers a second ensure of a warm-made database", async () => {
    expect((await runtime.ensure(spec)).endpoint).toEqual(ensured.endpoint);
  });

  it("the moved postmaster still checkpoints: its old path leads to the new directory until it exits", async () => {
    await runtime.adminQuery(spec, "CHECKPOINT");
    const log = await postgresLog(spec.slug);
    expect(log).toMatch(/checkpoint complete/);
    // "FATAL: the database system is starting up" is a readiness probe arriving
    // early, not a failure; any other FATAL, or a PANIC, is.
    expect(log).not.toMatch(/PANIC|FATAL:(?! {2}the database system is starting up)/);
  });

  it("refills the pool in the background", async () => {
    await runtime.warmPool.whenFull(AbortSignal.timeout(FILL_TIMEOUT_MS));
    expect(runtime.warmPool.ready).toBe(2);
    expect(await warmEntries()).toHaveLength(2);
  });

  it("close stops every process it started, warm ones included, cleanly, and frees the pooler port", async () => {
    await runtime.close();
    expect(processesUnder(bed.dataDir)).toEqual([]);
    expect(await tryToBind(ensured.endpoint.port)).toBe(true);
    const log = await postgresLog(spec.slug);
    expect(log).not.toMatch(/PANIC/);
    expect(log.trim().split("\n").at(-1)).toMatch(/database system is shut down/);
    expect(readdirSync(warmDir()).filter(isAlias)).toEqual([]);
  });

  it("after a restart, a warm-made database runs from its own directory with its data and endpoint, and warm copies are reused", async () => {
    const before = await warmEntries();
    runtime = await bed.open({ warmPool: 2 });
    const back = await runtime.ensure(spec);
    expect(back.endpoint).toEqual(ensured.endpoint);
    await withApp(back, spec, async (client) => {
      expect((await client.query("SELECT body FROM notes")).rows).toEqual([{ body: "kept" }]);
    });
    const pgdata = join(bed.dataDir, "instances", spec.slug, "pgdata");
    expect(readlinkSync(`/proc/${await postmasterPid(pgdata)}/cwd`)).toBe(pgdata);
    expect(await postgresLog(spec.slug)).not.toMatch(/not properly shut down/);
    await runtime.warmPool.whenFull(AbortSignal.timeout(FILL_TIMEOUT_MS));
    expect(await warmEntries()).toEqual(before);
  });

  it("stops a warm PostgreSQL left running by a killed service, and keeps no more copies than the pool's size", async () => {
    await runtime.close();
    const [orphanId] = await warmEntries();
    const pgdata = join(warmDir(), orphanId!, "pgdata");
    const user = await instanceUser(pgdata);
    const orphan = spawn(runtime.binaries.postgres.postgres, postmasterArgs(join(warmDir(), orphanId!)), { ...user, cwd: pgdata, detached: true, stdio: "ignore" });
    orphan.unref();
    await eventually(async () => expect((await readFile(join(pgdata, "postmaster.pid"), "utf8")).split("\n")[7]?.trim()).toBe("ready"));

    runtime = await bed.open({ warmPool: 1 });
    await runtime.warmPool.whenFull(AbortSignal.timeout(FILL_TIMEOUT_MS));
    expect(isAlive(orphan.pid ?? 0)).toBe(false);
    expect(await warmEntries()).toEqual([orphanId]);
    const other = newSpec("warm-other");
    await appQuery(await runtime.ensure(other), other);
  });

  it("stops cleanly a moved warm postmaster that a killed service left running through its symlink", async () => {
    await runtime.close();
    const instanceDir = join(bed.dataDir, "instances", spec.slug);
    const alias = join(warmDir(), "w-0123456789ab");
    symlinkSync(instanceDir, alias);
    const user = await instanceUser(join(instanceDir, "pgdata"));
    const orphan = spawn(runtime.binaries.postgres.postgres, postmasterArgs(alias), { ...user, cwd: join(instanceDir, "pgdata"), detached: true, stdio: "ignore" });
    orphan.unref();
    await eventually(async () => expect((await readFile(join(instanceDir, "pgdata", "postmaster.pid"), "utf8")).split("\n")[7]?.trim()).toBe("ready"));

    runtime = await bed.open({ warmPool: 1 });
    expect(isAlive(orphan.pid ?? 0)).toBe(false);
    expect(existsIn(warmDir(), "w-0123456789ab")).toBe(false);
    expect(await postgresLog(spec.slug)).not.toMatch(/PANIC/);
    await appQuery(await runtime.ensure(spec), spec);
  });

  it("with the pool turned off, the warm copies of an earlier run are removed", async () => {
    await runtime.close();
    runtime = await bed.open({ warmPool: 0 });
    await eventually(async () => expect(await warmEntries()).toEqual([]));
    expect(processesUnder(warmDir())).toEqual([]);
    const cold = newSpec("warm-cold");
    await appQuery(await runtime.ensure(cold), cold);
    expect(readyLine(bed.logs.text(), cold.slug)?.["source"]).toBe("copy");
  });
});

async function postgresLog(slug: string): Promise<string> {
  return readFile(join(bedDir, "instances", slug, "postgres.log"), "utf8");
}

function existsIn(dir: string, name: string): boolean {
  return readdirSync(dir).includes(name);
}
