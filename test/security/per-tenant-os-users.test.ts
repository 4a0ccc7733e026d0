// Issue item 11, defense in depth: a tenant that became superuser of its own
// cluster (simulated: a superuser session over its unix socket, which is what
// its OS user can open) runs programs and reads files as that OS user. With the
// service as root, each project runs as an OS user of its own, so none of that
// reaches another project: its files, its socket, its pooler's secrets, its processes.
import { execFile } from "node:child_process";
import { appendFile, chmod, lstat, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProcessRuntime } from "../../src/runtime/process/index.js";
import type { DatabaseSpec } from "../../src/runtime/runtime.js";
import { processTestBed, removeDataDir, type ProcessTestBed } from "../support/process-runtime-harness.js";
import { renderPostgresSettings } from "../../src/runtime/process/children/postgres-settings.js";
import { appQuery, newSpec, postmasterPid, processesUnder, withApp } from "../runtime/process-helpers.js";
import { processUid } from "./os-child.js";

const run = promisify(execFile);

describe.skipIf(process.getuid?.() !== 0)("security: each project runs as an OS user of its own", () => {
  let bed: ProcessTestBed;
  let runtime: ProcessRuntime;
  const a = newSpec("tenant-a");
  const b = newSpec("tenant-b");

  beforeAll(async () => {
    bed = await processTestBed(26);
    runtime = await bed.open();
    await appQuery(await runtime.ensure(a), a);
    await appQuery(await runtime.ensure(b), b);
  });

  afterAll(async () => {
    await runtime?.close();
    if (bed) await removeDataDir(bed.dataDir);
  });

  const dirOf = (spec: DatabaseSpec) => join(bed.dataDir, "instances", spec.slug);
  const pgdataOf = (spec: DatabaseSpec) => join(dirOf(spec), "pgdata");

  /** As `spec`'s cluster superuser: a program run by COPY FROM PROGRAM, i.e. as its OS user; its stdout lines. */
  async function program(spec: DatabaseSpec, command: string): Promise<string[]> {
    const rows = await runtime.adminQuery(
      spec,
      `CREATE TEMP TABLE out (line text); COPY out FROM PROGRAM ${literal(command)}; SELECT line FROM out`,
    );
    return rows.map((row) => row["line"] ?? "");
  }

  it("runs each project's PostgreSQL and PgBouncer as a distinct unprivileged uid", async () => {
    const [uidA] = await program(a, "id -u");
    const [uidB] = await program(b, "id -u");
    expect(Number(uidA)).toBeGreaterThan(0);
    expect(Number(uidB)).toBeGreaterThan(0);
    expect(uidA).not.toBe(uidB);
    for (const [spec, uid] of [[a, uidA], [b, uidB]] as const) {
      const pids = processesUnder(dirOf(spec));
      expect(pids.length).toBeGreaterThanOrEqual(2);
      for (const pid of pids) expect(processUid(pid)).toBe(Number(uid));
    }
  });

  it("keeps each project's own directories 0700 and its instance directory closed to other users", async () => {
    for (const spec of [a, b]) {
      const owner = (await stat(pgdataOf(spec))).uid;
      for (const dir of [pgdataOf(spec), join(dirOf(spec), "run"), join(dirOf(spec), "pgbouncer")]) {
        const stats = await stat(dir);
        expect(stats.mode & 0o777).toBe(0o700);
        expect(stats.uid).toBe(owner);
      }
      // The instance directory is root's: the child passes through it, cannot list or change it.
      const instanceDir = await stat(dirOf(spec));
      expect(instanceDir.uid).toBe(0);
      expect(instanceDir.mode & 0o777).toBe(0o710);
    }
  });

  it("refuses A's superuser B's data directory, pooler config and userlist", async () => {
    for (const file of [join(pgdataOf(b), "PG_VERSION"), join(dirOf(b), "userlist.txt"), join(dirOf(b), "pgbouncer.ini")]) {
      await expect(runtime.adminQuery(a, `SELECT pg_read_file(${literal(file)})`)).rejects.toThrow();
      await expect(program(a, `cat ${file}`)).rejects.toThrow();
    }
    await expect(program(a, `ls ${pgdataOf(b)}`)).rejects.toThrow();
  });

  it("refuses A's superuser a connection to B's unix socket", async () => {
    const psql = runtime.binaries.postgres.psql;
    await expect(program(a, `${psql} -X -h ${join(dirOf(b), "run")} -U postgres -d postgres -tAc 'SELECT 1'`)).rejects.toThrow();
  });

  it("refuses A's superuser a signal to any of B's processes", async () => {
    const pids = [await postmasterPid(pgdataOf(b)), ...processesUnder(dirOf(b))];
    const delivered = await program(a, `for pid in ${pids.join(" ")}; do kill -CONT $pid 2>/dev/null && echo $pid; done; true`);
    expect(delivered).toEqual([]);
    await appQuery(await runtime.ensure(b), b);
  });

  it("removes a project's OS user with its instance, and what it left in /tmp for the next user of its uid", async () => {
    const uid = (await stat(pgdataOf(a))).uid;
    await run("getent", ["passwd", String(uid)]);
    const left = join(tmpdir(), `sota-left-${a.slug}`);
    // A set-uid program left behind would run as whoever gets the uid next.
    await program(a, `cp /bin/true ${left} && chmod 4755 ${left}`);
    expect((await stat(left)).uid).toBe(uid);
    await runtime.remove(a, { keepData: false });
    await expect(run("getent", ["passwd", String(uid)])).rejects.toThrow();
    await expect(stat(left)).rejects.toThrow();
  });
});

describe.skipIf(process.getuid?.() !== 0)("an instance of an earlier release, where everything was the shared user postgres's", () => {
  let bed: ProcessTestBed;
  let runtime: ProcessRuntime;
  let postgresUser: { uid: number; gid: number } | undefined;
  const spec = newSpec("earlier");

  beforeAll(async () => {
    const entry = await run("getent", ["passwd", "postgres"]).catch(() => undefined);
    const fields = entry?.stdout.split(":");
    if (fields) postgresUser = { uid: Number(fields[2]), gid: Number(fields[3]) };
    bed = await processTestBed(27);
    runtime = await bed.open();
  });

  afterAll(async () => {
    await runtime?.close();
    if (bed) await removeDataDir(bed.dataDir);
  });

  it("gets an OS user of its own on the next start, keeping its data and URL, and root follows no link left in it", async (context) => {
    if (!postgresUser) context.skip();
    const legacy = postgresUser!;
    const first = await runtime.ensure(spec);
    await withApp(first, spec, async (client) => {
      await client.query("CREATE TABLE notes (body text)");
      await client.query("INSERT INTO notes VALUES ('kept')");
    });
    await runtime.close();

    // Today's layout turned into the earlier release's: all postgres's, the settings inside pgdata.
    const dir = join(bed.dataDir, "instances", spec.slug);
    const pgdata = join(dir, "pgdata");
    const ownUser = (await readFile(join(dir, "os-user"), "utf8")).trim();
    await rm(join(dir, "os-user"));
    await rm(join(dir, "postgresql.conf"));
    await rm(join(dir, "pg_hba.conf"));
    await rm(join(dir, "pgbouncer"), { recursive: true });
    await run("userdel", [ownUser]);
    await appendFile(join(pgdata, "postgresql.conf"), "\ninclude_if_exists = 'sota.conf'\n");
    await writeFile(join(pgdata, "sota.conf"), renderPostgresSettings(join(dir, "run")));
    const template = join(bed.dataDir, "templates", `pg${runtime.binaries.postgres.major}`);
    for (const path of [dir, template]) await run("chown", ["-R", `${legacy.uid}:${legacy.gid}`, path]);
    await chmod(dir, 0o700);
    // What postgres could have left there: a link to a root-owned file where the service writes its log.
    const rootDir = await mkdtemp(join(tmpdir(), "sota-root-owned-"));
    const target = join(rootDir, "target");
    await writeFile(target, "root's\n", { mode: 0o644 });
    await rm(join(dir, "postgres.log"));
    await symlink(target, join(dir, "postgres.log"));
    await run("chown", ["-h", `${legacy.uid}:${legacy.gid}`, join(dir, "postgres.log")]);

    try {
      runtime = await bed.open();
      const back = await runtime.ensure(spec);
      expect(back.endpoint).toEqual(first.endpoint);
      await withApp(back, spec, async (client) => {
        expect((await client.query("SELECT body FROM notes")).rows).toEqual([{ body: "kept" }]);
      });
      const owner = (await stat(pgdata)).uid;
      expect(owner).not.toBe(legacy.uid);
      expect(owner).not.toBe(0);
      expect((await stat(dir)).uid).toBe(0);
      expect((await lstat(join(dir, "postgres.log"))).isFile()).toBe(true);
      expect(await readFile(target, "utf8")).toBe("root's\n");
      expect((await stat(target)).uid).toBe(0);
      // The template the shared user could change is not copied from again.
      expect((await stat(template)).uid).toBe(0);
    } finally {
      await removeDataDir(rootDir);
    }
  });
});

describe.skipIf(process.getuid?.() !== 0)("SOTA_RUN_AS_USER: every database as one shared OS user, as before", () => {
  it("runs as that user, keeps the template root's, and never deletes the shared user", async (context) => {
    const entry = await run("getent", ["passwd", "postgres"]).catch(() => undefined);
    if (!entry) context.skip();
    const uid = Number(entry!.stdout.split(":")[2]);
    const bed = await processTestBed(28);
    const runtime = await bed.open({ runAsUser: "postgres" });
    const spec = newSpec("shared");
    try {
      await appQuery(await runtime.ensure(spec), spec);
      const dir = join(bed.dataDir, "instances", spec.slug);
      expect((await stat(join(dir, "pgdata"))).uid).toBe(uid);
      expect((await stat(dir)).uid).toBe(0);
      expect((await stat(join(bed.dataDir, "templates", `pg${runtime.binaries.postgres.major}`))).uid).toBe(0);
      expect(bed.logs.text()).toContain("every database runs as one shared OS user");
      await runtime.remove(spec, { keepData: false });
      await run("getent", ["passwd", "postgres"]);
    } finally {
      await runtime.close();
      await removeDataDir(bed.dataDir);
    }
  });
});

function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
