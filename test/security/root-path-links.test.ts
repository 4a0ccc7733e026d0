// Issue item 3: the service runs as root and PostgreSQL and PgBouncer as an
// unprivileged OS user. That user is the attacker here (a tenant who became
// superuser of its own cluster can run any program as it): it plants links and
// pids where the service looks, then makes the service (re)start its server.
// Root must never open, write, chown or signal through any of them.
import { spawn } from "node:child_process";
import { chmod, mkdir, mkdtemp, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProcessRuntime } from "../../src/runtime/process/index.js";
import type { DatabaseSpec, EnsureResult } from "../../src/runtime/runtime.js";
import { processTestBed, removeDataDir, type ProcessTestBed } from "../support/process-runtime-harness.js";
import { appQuery, eventually, isAlive, newSpec, postmasterPid } from "../runtime/process-helpers.js";
import { countLines, ownerOf, runAs, type OsIdentity } from "./os-child.js";

const ROOT_CONTENT = "# a root-owned file: its owner and content must not change\n";

describe.skipIf(process.getuid?.() !== 0)("security: root follows no path or pid the child OS user controls", () => {
  let bed: ProcessTestBed;
  let runtime: ProcessRuntime;
  let rootDir: string;
  const victims: number[] = [];

  beforeAll(async () => {
    bed = await processTestBed(25);
    runtime = await bed.open();
    // Root's own files, where the child cannot write.
    rootDir = await mkdtemp(join(tmpdir(), "sota-root-owned-"));
    await chmod(rootDir, 0o755);
  });

  afterAll(async () => {
    for (const pid of victims) if (isAlive(pid)) process.kill(pid, "SIGKILL");
    await runtime?.close();
    if (bed) await removeDataDir(bed.dataDir);
    if (rootDir) await removeDataDir(rootDir);
  });

  const instanceDir = (slug: string) => join(bed.dataDir, "instances", slug);

  async function newDatabase(prefix: string): Promise<{ spec: DatabaseSpec; result: EnsureResult; dir: string; pgdata: string; child: OsIdentity }> {
    const spec = newSpec(prefix);
    const result = await runtime.ensure(spec);
    const dir = instanceDir(spec.slug);
    const pgdata = join(dir, "pgdata");
    return { spec, result, dir, pgdata, child: await ownerOf(pgdata) };
  }

  async function rootFile(name: string): Promise<string> {
    const path = join(rootDir, name);
    await writeFile(path, ROOT_CONTENT, { mode: 0o644 });
    return path;
  }

  async function expectUntouched(path: string): Promise<void> {
    const stats = await stat(path);
    expect({ uid: stats.uid, gid: stats.gid }).toEqual({ uid: 0, gid: 0 });
    expect(await readFile(path, "utf8")).toBe(ROOT_CONTENT);
  }

  /** As the child: stops its own postmaster; resolves once the supervisor has tried to start it again. */
  async function crashAndWaitForRestart(slug: string, pgdata: string, child: OsIdentity, pid?: number): Promise<void> {
    const logs = () => bed.logs.text();
    // PostgreSQL's own restart: its WAL receiver, which loses its connection, restarts too.
    const restarts = (): number => countLines(logs(), slug, "child restarted", "postgres") + countLines(logs(), slug, "child restart failed; retrying", "postgres");
    const before = restarts();
    const killed = await runAs(child, "kill", ["-QUIT", String(pid ?? (await postmasterPid(pgdata)))]);
    expect(killed.code).toBe(0);
    await eventually(async () => {
      expect(restarts()).toBeGreaterThan(before);
    });
  }

  /** The restarted postmaster has written "ready" into its pid file. */
  async function postmasterReady(pgdata: string): Promise<void> {
    await eventually(async () => {
      const lines = (await readFile(join(pgdata, "postmaster.pid"), "utf8")).split("\n");
      expect(isAlive(Number(lines[0]))).toBe(true);
      expect(lines[7]?.trim()).toBe("ready");
    });
  }

  it("(a) postgres.log replaced by a symlink to a root-owned file: the restart neither chowns nor writes the target", async () => {
    const { spec, dir, pgdata, child } = await newDatabase("links-log");
    const target = await rootFile("log-target");
    await runAs(child, "ln", ["-sfn", target, join(dir, "postgres.log")]);
    await crashAndWaitForRestart(spec.slug, pgdata, child);
    await postmasterReady(pgdata);
    await expectUntouched(target);
    // The deploy engine's next ensure (the crash may have cut off the role's asynchronous commit).
    await appQuery(await runtime.ensure(spec), spec);
  });

  it("(b) postgresql.conf replaced by a symlink to a root-owned file: the restart does not append to it", async () => {
    const { spec, pgdata, child } = await newDatabase("links-conf");
    const target = await rootFile("conf-target");
    await runAs(child, "ln", ["-sfn", target, join(pgdata, "postgresql.conf")]);
    await crashAndWaitForRestart(spec.slug, pgdata, child);
    await postmasterReady(pgdata);
    await expectUntouched(target);
  });

  it("(b) the data directory replaced by a symlink to a root-owned directory: the restart writes and chowns nothing there", async () => {
    const { spec, dir, pgdata, child } = await newDatabase("links-pgdata");
    const target = join(rootDir, "etc-like");
    await mkdir(target, { mode: 0o755 });
    const pid = await postmasterPid(pgdata);
    await runAs(child, "sh", ["-c", `mv "${pgdata}" "${pgdata}.real" && ln -s "${target}" "${pgdata}"`], dir);
    await crashAndWaitForRestart(spec.slug, pgdata, child, pid);
    expect(await readdir(target)).toEqual([]);
    expect((await stat(target)).uid).toBe(0);
  });

  it("(c) postmaster.pid naming a root process: a service restart does not signal it", async () => {
    const { spec, pgdata, child } = await newDatabase("links-pid");
    await runtime.close();
    // A root process that passes today's check (its working directory is the data directory).
    const victim = spawn("sleep", ["600"], { cwd: pgdata, detached: true, stdio: "ignore" });
    victim.unref();
    victims.push(victim.pid!);
    const planted = await runAs(child, "sh", ["-c", `printf '%s\\n' ${victim.pid} > "${pgdata}/postmaster.pid"`]);
    expect(planted.code).toBe(0);
    runtime = await bed.open();
    await runtime.ensure(spec).catch(() => undefined);
    expect(isAlive(victim.pid!)).toBe(true);
  });

  it("(c) data directory swapped for a link to a root process's working directory, with a planted pid: not signalled", async () => {
    const { spec, dir, pgdata, child } = await newDatabase("links-cwd");
    await runtime.close();
    // A directory the child may write (as /tmp is), where a root process happens to run.
    const lure = await mkdtemp(join(tmpdir(), "sota-lure-"));
    await chmod(lure, 0o777);
    const victim = spawn("sleep", ["600"], { cwd: lure, detached: true, stdio: "ignore" });
    victim.unref();
    victims.push(victim.pid!);
    const major = String(runtime.binaries.postgres.major);
    await runAs(
      child,
      "sh",
      ["-c", `printf '%s\\n' ${victim.pid} > "${lure}/postmaster.pid"; echo ${major} > "${lure}/PG_VERSION"; mv "${pgdata}" "${pgdata}.real" && ln -s "${lure}" "${pgdata}"`],
      dir,
    );
    try {
      runtime = await bed.open();
      await runtime.ensure(spec).catch(() => undefined);
      expect(isAlive(victim.pid!)).toBe(true);
    } finally {
      await removeDataDir(lure);
    }
  });
});
