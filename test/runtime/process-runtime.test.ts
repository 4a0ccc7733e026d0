// The process driver against the host's real PostgreSQL and PgBouncer: the
// shared Runtime contract, then what only this driver does (binaries, OS user,
// supervision, stale processes from a killed service, socket paths).
import { spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProcessRuntime } from "../../src/runtime/process/index.js";
import { discoverBinaries } from "../../src/runtime/process/index.js";
import { renderPgbouncerIni } from "../../src/runtime/process/children/pgbouncer-config.js";
import { SOCKET_ACTIVATION } from "../../src/runtime/process/children/pgbouncer-server.js";
import { PoolerSockets } from "../../src/runtime/process/host/pooler-sockets.js";
import { parsePgbouncerVersion } from "../../src/runtime/process/host/postgres-binaries.js";
import { supportsPreparedStatements } from "../../src/runtime/shared/pgbouncer-settings.js";
import { createScramVerifier, scramVerifierMatches } from "../../src/runtime/shared/scram-secret.js";
import { RuntimeError, type EnsureResult } from "../../src/runtime/runtime.js";
import { processTestBed, removeDataDir, type ProcessTestBed } from "../support/process-runtime-harness.js";
import { appQuery, eventually, instanceUser, isAlive, newSpec, postmasterArgs, postmasterPid } from "./process-helpers.js";
import { describeRuntimeContract } from "./runtime-contract.js";

describeRuntimeContract("process", async () => {
  const bed = await processTestBed(0);
  let runtime = await bed.open();
  return {
    runtime,
    reopen: async () => {
      await runtime.close();
      runtime = await bed.open();
      return runtime;
    },
    cleanup: async () => {
      await runtime.close();
      await removeDataDir(bed.dataDir);
    },
    logs: () => bed.logs.text(),
  };
});

describe("process runtime: host binaries", () => {
  it("finds the installed PostgreSQL and PgBouncer and their versions", async () => {
    const found = await discoverBinaries();
    expect(found.postgres.major).toBeGreaterThanOrEqual(13);
    expect(found.postgres.version.startsWith(String(found.postgres.major))).toBe(true);
    expect(found.pgbouncer.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(found.pgbouncer.preparedStatementsSupported).toBe(
      supportsPreparedStatements((parsePgbouncerVersion(`PgBouncer ${found.pgbouncer.version}`) ?? [0, 0, 0]).join(".")),
    );
  });

  it("says in one line what to install when PostgreSQL is missing", async () => {
    const error = await discoverBinaries({ pgBinDir: "/nonexistent/postgresql/bin" }).catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(RuntimeError);
    expect((error as RuntimeError).reason).toBe("unavailable");
    expect((error as RuntimeError).message).not.toContain("\n");
    expect((error as RuntimeError).message).toMatch(/install the postgresql package/);
    expect((error as RuntimeError).message).toContain("SOTA_PG_BIN_DIR");
  });

  it("says in one line what to install when PgBouncer is missing", async () => {
    const error = await discoverBinaries({ pgbouncerBin: "/nonexistent/pgbouncer" }).catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(RuntimeError);
    expect((error as RuntimeError).reason).toBe("unavailable");
    expect((error as RuntimeError).message).not.toContain("\n");
    expect((error as RuntimeError).message).toMatch(/install the pgbouncer package/);
  });

  it("enables max_prepared_statements only from PgBouncer 1.22 (the first to survive DISCARD ALL)", () => {
    expect(parsePgbouncerVersion("PgBouncer 1.18.0\nlibevent 2.1.12-stable")).toEqual([1, 18, 0]);
    expect(parsePgbouncerVersion("PgBouncer 1.24.1")).toEqual([1, 24, 1]);
    expect(supportsPreparedStatements("1.18.0")).toBe(false);
    expect(supportsPreparedStatements("1.20.9")).toBe(false);
    expect(supportsPreparedStatements("1.21.0")).toBe(false);
    expect(supportsPreparedStatements("1.22.0")).toBe(true);
    expect(supportsPreparedStatements("2.0.0")).toBe(true);
    const input = {
      slug: "my-app",
      port: 16432,
      socketDir: "/data/instances/my-app/run",
      userlistFile: "/u",
      logFile: "/l",
      pidFile: "/p",
    };
    expect(renderPgbouncerIni({ ...input, preparedStatementsSupported: true })).toContain("max_prepared_statements = 100");
    expect(renderPgbouncerIni({ ...input, preparedStatementsSupported: false })).not.toContain("max_prepared_statements");
    const ini = renderPgbouncerIni({ ...input, preparedStatementsSupported: false });
    expect(ini).toContain("my-app = host=/data/instances/my-app/run port=5432 dbname=my-app\n");
    expect(ini).toContain("my-app_session = host=/data/instances/my-app/run port=5432 dbname=my-app pool_mode=session pool_size=5 max_db_connections=5\n");
    expect(ini).toContain("server_reset_query = DISCARD ALL\n");
    expect(ini).toContain("server_reset_query_always = 1\n");
  });
});

describe("process runtime: SCRAM verifiers", () => {
  it("match their own password only", () => {
    const verifier = createScramVerifier("a1b2c3d4e5f60718293a4b5c6d7e8f90");
    expect(verifier).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
    expect(scramVerifierMatches("a1b2c3d4e5f60718293a4b5c6d7e8f90", verifier)).toBe(true);
    expect(scramVerifierMatches("a1b2c3d4e5f60718293a4b5c6d7e8f91", verifier)).toBe(false);
    expect(scramVerifierMatches("anything", "md5abcdef")).toBe(false);
    expect(scramVerifierMatches("anything", null)).toBe(false);
  });
});

describe("process runtime: driver behaviour", () => {
  let bed: ProcessTestBed;
  let runtime: ProcessRuntime;
  const spec = newSpec("proc-main");
  let ensured: EnsureResult;

  beforeAll(async () => {
    bed = await processTestBed(1);
    runtime = await bed.open();
    ensured = await runtime.ensure(spec);
  });

  afterAll(async () => {
    await runtime?.close();
    if (bed) await removeDataDir(bed.dataDir);
  });

  const paths = (slug: string) => {
    const dir = join(bed.dataDir, "instances", slug);
    return { dir, pgdata: join(dir, "pgdata"), ini: join(dir, "pgbouncer.ini"), pgbouncerPid: join(dir, "pgbouncer", "pgbouncer.pid") };
  };

  it("tunes PostgreSQL for small databases on a unix socket only, fsync on", async () => {
    const rows = await runtime.adminQuery(
      spec,
      `SELECT current_setting('listen_addresses') AS listen, current_setting('shared_buffers') AS buffers,
              current_setting('max_connections') AS conns, current_setting('fsync') AS fsync`,
    );
    expect(rows).toEqual([{ listen: "", buffers: "16MB", conns: "33", fsync: "on" }]);
  });

  it("writes a PgBouncer config without a unix socket or an address of its own, and with prepared statements only where supported", async () => {
    const ini = await readFile(paths(spec.slug).ini, "utf8");
    expect(ini).toMatch(/^unix_socket_dir = $/m);
    // It is handed the socket the service holds.
    expect(ini).not.toMatch(/^listen_addr/m);
    expect(ini.includes("max_prepared_statements")).toBe(runtime.binaries.pgbouncer.preparedStatementsSupported);
  });

  it("reads SCRAM verifiers made by PostgreSQL itself (same RFC 5802 derivation)", async () => {
    const role = `verifier_check_${randomBytes(3).toString("hex")}`;
    await runtime.adminQuery(spec, `CREATE ROLE ${role} PASSWORD 'pg-made-password'`);
    try {
      const rows = await runtime.adminQuery(spec, `SELECT rolpassword FROM pg_authid WHERE rolname = '${role}'`);
      expect(scramVerifierMatches("pg-made-password", rows[0]?.["rolpassword"])).toBe(true);
      expect(scramVerifierMatches("pg-made-passworD", rows[0]?.["rolpassword"])).toBe(false);
    } finally {
      await runtime.adminQuery(spec, `DROP ROLE ${role}`);
    }
  });

  it("the fast path answers repeated ensures without redoing work", async () => {
    const started = performance.now();
    for (let i = 0; i < 50; i++) expect((await runtime.ensure(spec)).endpoint).toEqual(ensured.endpoint);
    expect((performance.now() - started) / 50).toBeLessThan(5);
  });

  it("refuses a slug that belongs to another project", async () => {
    await expect(runtime.ensure({ ...spec, projectId: randomUUID() })).rejects.toMatchObject({ reason: "conflict" });
  });

  it("restarts a killed postgres", async () => {
    const before = await postmasterPid(paths(spec.slug).pgdata);
    process.kill(before, "SIGKILL");
    await eventually(async () => {
      expect(await postmasterPid(paths(spec.slug).pgdata)).not.toBe(before);
      await appQuery(ensured, spec);
    });
    expect((await runtime.ensure(spec)).endpoint).toEqual(ensured.endpoint);
    expect(bed.logs.text()).toContain("child exited unexpectedly; restarting");
  });

  it("restarts a killed pgbouncer", async () => {
    const before = Number((await readFile(paths(spec.slug).pgbouncerPid, "utf8")).trim());
    process.kill(before, "SIGKILL");
    await eventually(async () => {
      const now = Number((await readFile(paths(spec.slug).pgbouncerPid, "utf8")).trim());
      expect(now).not.toBe(before);
      await appQuery(ensured, spec);
    });
  });

  it("times out with a clear error, and a later ensure finishes the job", async () => {
    const slow = newSpec("proc-timeout");
    // A deadline ends only a wait, never an answer: PostgreSQL must not answer
    // the first readiness check. Starved to 1% of a core it takes seconds to
    // start, however fast the machine (a plain start sometimes answered at once
    // on a busy CI machine, and the ensure then succeeded).
    const impatient = await bed.open({ readyTimeoutMs: 1, spareCopies: 0 });
    try {
      const error = await impatient.ensure({ ...slow, limits: { cpus: 0.01 } }).catch((reason: unknown) => reason);
      expect(error).toBeInstanceOf(RuntimeError);
      expect((error as RuntimeError).reason).toBe("timeout");
      expect((error as RuntimeError).message).toContain(slow.slug);
    } finally {
      await impatient.close();
    }
    const result = await runtime.ensure(slow);
    await appQuery(result, slow);
    await runtime.remove(slow, { keepData: false });
  });

  it("clears what a crash left half done", async () => {
    const crashed = newSpec("proc-crashed");
    const dir = paths(crashed.slug).dir;
    await mkdir(join(dir, "pgdata.tmp-deadbeef"), { recursive: true });
    await writeFile(join(dir, "pgdata.tmp-deadbeef", "PG_VERSION"), "15\n");
    const result = await runtime.ensure(crashed);
    await appQuery(result, crashed);
    expect(existsSync(join(dir, "pgdata.tmp-deadbeef"))).toBe(false);
    await runtime.remove(crashed, { keepData: false });
    expect(existsSync(dir)).toBe(false);
  });

  it("copies again a data directory that a crash may have left before it reached the disk", async () => {
    const torn = newSpec("proc-torn");
    const dir = paths(torn.slug).dir;
    await mkdir(join(dir, "pgdata", "global"), { recursive: true });
    await writeFile(join(dir, "pgdata", "PG_VERSION"), `${runtime.binaries.postgres.major}\n`);
    await writeFile(join(dir, "pgdata.unflushed"), "");
    await writeFile(join(dir, "project-id"), `${torn.projectId}\n`);
    const result = await runtime.ensure(torn);
    await appQuery(result, torn);
    expect(existsSync(join(dir, "pgdata.unflushed"))).toBe(false);
    expect(existsSync(join(paths(spec.slug).dir, "pgdata.unflushed"))).toBe(false);
    await runtime.remove(torn, { keepData: false });
  });

  it("takes over from a postmaster and pgbouncer left running by a killed service", async () => {
    await runtime.close();
    const { pgdata, ini, dir } = paths(spec.slug);
    const user = await instanceUser(pgdata);
    const orphanPostgres = spawn(runtime.binaries.postgres.postgres, postmasterArgs(dir), { ...user, cwd: pgdata, detached: true, stdio: "ignore" });
    orphanPostgres.unref();
    await eventually(async () => expect((await readFile(join(pgdata, "postmaster.pid"), "utf8")).split("\n")[7]?.trim()).toBe("ready"));
    // Started as the service starts it, with the listening socket as its fd 3; then only it holds the port.
    const sockets = new PoolerSockets();
    const orphanPgbouncer = spawn("/bin/sh", ["-c", SOCKET_ACTIVATION, runtime.binaries.pgbouncer.path, "-q", ini], {
      ...user,
      cwd: dir,
      detached: true,
      stdio: ["ignore", "ignore", "ignore", sockets.hold(ensured.endpoint.port)],
    });
    await sockets.close();
    orphanPgbouncer.unref();
    await eventually(() => appQuery(ensured, spec));

    runtime = await bed.open();
    const back = await runtime.ensure(spec);
    expect(back.endpoint).toEqual(ensured.endpoint);
    await appQuery(back, spec);
    expect(isAlive(orphanPostgres.pid ?? 0)).toBe(false);
    expect(isAlive(orphanPgbouncer.pid ?? 0)).toBe(false);
  });

  it("uses a short socket directory when the data dir path is too long for a unix socket", async () => {
    const longBed = await processTestBed(2);
    const deep = join(longBed.dataDir, "a-rather-long-directory-name-to-push-the-socket-path".repeat(2));
    await mkdir(deep, { mode: 0o711 });
    const longRuntime = await longBed.open({ dataDir: deep });
    const long = newSpec("proc-long-path-slug-that-is-long");
    try {
      const result = await longRuntime.ensure(long);
      await appQuery(result, long);
      await longRuntime.remove(long, { keepData: false });
    } finally {
      await longRuntime.close();
      await removeDataDir(longBed.dataDir);
    }
  });

  it("refuses a data dir the instances' OS users cannot reach, naming SOTA_DATA_DIR", async (context) => {
    if (process.getuid?.() !== 0) context.skip();
    const locked = await mkdtemp(join(tmpdir(), "sota-locked-"));
    try {
      await chmod(locked, 0o700);
      const error = await bed.open({ dataDir: join(locked, "data") }).catch((reason: unknown) => reason);
      expect(error).toBeInstanceOf(RuntimeError);
      expect((error as RuntimeError).reason).toBe("unavailable");
      expect((error as RuntimeError).message).toContain("SOTA_DATA_DIR");
      expect((error as RuntimeError).message).not.toContain("\n");
    } finally {
      await removeDataDir(locked);
    }
  });

  it("refuses an OS user that does not exist", async (context) => {
    if (process.getuid?.() !== 0) context.skip();
    await expect(bed.open({ runAsUser: "sota-no-such-user" })).rejects.toThrow(/SOTA_RUN_AS_USER/);
  });

  it("ping succeeds while the binaries are installed", async () => {
    await expect(runtime.ping()).resolves.toBeUndefined();
  });

  it("rejects calls after close", async () => {
    const closing = await bed.open();
    await closing.close();
    await expect(closing.ensure(newSpec("proc-closed"))).rejects.toMatchObject({ reason: "unavailable" });
    await expect(closing.ping()).rejects.toMatchObject({ reason: "unavailable" });
  });

  it("never logs a password or a verifier", () => {
    const logs = bed.logs.text();
    expect(logs).not.toContain(spec.password);
    expect(logs).not.toContain("SCRAM-SHA-256$");
  });
});
