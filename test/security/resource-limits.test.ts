// Issue 11 item 5: one tenant must not eat the host. Each database of the
// process runtime runs in a cgroup of its own with a memory, CPU and process
// limit; a database that allocates far past its memory limit has a backend
// killed inside its own cgroup (PostgreSQL restarts its sessions, the service
// reports it) while a neighbour keeps serving queries; and a tenant that
// became superuser of its cluster cannot move itself out or raise its limits.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProcessRuntime } from "../../src/runtime/process/index.js";
import { Metrics } from "../../src/metrics.js";
import { instancePaths } from "../../src/runtime/process/instance/instance-paths.js";
import { appRoleSocketClient } from "../../src/runtime/process/sql/pg-clients.js";
import { APP_ROLE_CONNECTION_LIMIT, appRoleName } from "../../src/runtime/shared/app-role.js";
import type { DatabaseSpec, EnsureResult } from "../../src/runtime/runtime.js";
import { processTestBed, removeDataDir, type ProcessTestBed } from "../support/process-runtime-harness.js";
import { eventually, newSpec, postmasterPid, processesUnder, withApp } from "../runtime/process-helpers.js";

const MEMORY_MB = 128;
/** Far past the limit: a 400 MB string built in one backend. */
const HOG_SQL = "SELECT length(string_agg(repeat('x', 1000000), '')) FROM generate_series(1, 400)";

/** The cgroup directories a process is in, by controller, from /proc (v1: "memory", "cpu", "pids"; v2: ""). */
async function cgroupsOf(pid: number): Promise<Map<string, string>> {
  const own = new Map<string, string>();
  for (const line of (await readFile(`/proc/${pid}/cgroup`, "utf8")).split("\n")) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    for (const controller of match[1]!.split(",")) own.set(controller, match[2]!);
  }
  return own;
}

async function cgroupMode(): Promise<"v2" | "v1" | "none"> {
  const controllers = await readFile("/sys/fs/cgroup/cgroup.controllers", "utf8").catch(() => undefined);
  if (controllers?.includes("memory")) return "v2";
  const v1 = await readFile("/sys/fs/cgroup/memory/memory.limit_in_bytes", "utf8").catch(() => undefined);
  return v1 === undefined ? "none" : "v1";
}

const mode = await cgroupMode();

describe.skipIf(process.getuid?.() !== 0 || mode === "none")(`security: per-database resource limits (cgroup ${mode})`, () => {
  let bed: ProcessTestBed;
  let runtime: ProcessRuntime;
  const hog = newSpec("limits-hog");
  const neighbour: DatabaseSpec = { ...newSpec("limits-calm"), limits: { memoryMb: 256, cpus: 0.5 } };
  const results = new Map<string, EnsureResult>();

  beforeAll(async () => {
    bed = await processTestBed(75);
    runtime = await bed.open({ limits: { memoryMb: MEMORY_MB, cpus: 1, pids: 200, shmMb: 0 } });
    results.set(hog.slug, await runtime.ensure(hog));
    results.set(neighbour.slug, await runtime.ensure(neighbour));
  });

  afterAll(async () => {
    await runtime?.close();
    if (bed) await removeDataDir(bed.dataDir);
  });

  const dirOf = (spec: DatabaseSpec) => join(bed.dataDir, "instances", spec.slug);

  /** The file of `spec`'s memory (v1) or unified (v2) cgroup, as its postmaster sees it. */
  async function limitFile(spec: DatabaseSpec, controller: "memory" | "cpu" | "pids", file: string): Promise<string> {
    const pid = await postmasterPid(join(dirOf(spec), "pgdata"));
    const groups = await cgroupsOf(pid);
    const path = mode === "v2" ? join("/sys/fs/cgroup", groups.get("")!, file) : join("/sys/fs/cgroup", controller, groups.get(controller)!, file);
    return (await readFile(path, "utf8")).trim();
  }

  it("runs every process of a database (postmaster, backends, PgBouncer) in its own limited cgroup", async () => {
    for (const spec of [hog, neighbour]) {
      // The WAL receiver starts after ensure has returned, and joins the
      // cgroup a moment after it is spawned (as every child does): asked again
      // until it is there, a process outside it for good still fails.
      await eventually(async () => {
        const pids = processesUnder(dirOf(spec));
        expect(pids.length).toBeGreaterThanOrEqual(3);
        for (const pid of pids) {
          const groups = await cgroupsOf(pid);
          const path = mode === "v2" ? groups.get("") : groups.get("memory");
          const command = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
          expect(path, `pid ${pid} of ${spec.slug}: ${command.replace(/\0/g, " ")}`).toMatch(new RegExp(`/sota-db/${spec.slug}$`));
          if (mode === "v1") {
            expect(groups.get("cpu")).toMatch(new RegExp(`/sota-db/${spec.slug}$`));
            expect(groups.get("pids")).toMatch(new RegExp(`/sota-db/${spec.slug}$`));
          }
        }
      });
    }
    const bytes = (mb: number) => String(mb * 1024 * 1024);
    if (mode === "v1") {
      expect(await limitFile(hog, "memory", "memory.limit_in_bytes")).toBe(bytes(MEMORY_MB));
      expect(await limitFile(hog, "cpu", "cpu.cfs_quota_us")).toBe("100000");
      expect(await limitFile(hog, "pids", "pids.max")).toBe("200");
      // The project's override, field by field over the defaults.
      expect(await limitFile(neighbour, "memory", "memory.limit_in_bytes")).toBe(bytes(256));
      expect(await limitFile(neighbour, "cpu", "cpu.cfs_quota_us")).toBe("50000");
      expect(await limitFile(neighbour, "pids", "pids.max")).toBe("200");
    } else {
      expect(await limitFile(hog, "memory", "memory.max")).toBe(bytes(MEMORY_MB));
      expect(await limitFile(hog, "cpu", "cpu.max")).toBe("100000 100000");
      expect(await limitFile(neighbour, "memory", "memory.max")).toBe(bytes(256));
      expect(await limitFile(neighbour, "cpu", "cpu.max")).toBe("50000 100000");
    }
    expect(await runtime.limitsStatus(neighbour)).toEqual({
      mechanism: `cgroup-${mode}`,
      limits: { memoryMb: 256, cpus: 0.5, pids: 200, shmMb: 0 },
      oomKills: 0,
    });
  });

  it("keeps a tenant that became superuser of its cluster inside its cgroup and its limits", async () => {
    const own = await cgroupsOf(await postmasterPid(join(dirOf(hog), "pgdata")));
    const memoryDir = mode === "v2" ? join("/sys/fs/cgroup", own.get("")!) : join("/sys/fs/cgroup/memory", own.get("memory")!);
    const limitName = mode === "v2" ? "memory.max" : "memory.limit_in_bytes";
    // As the cluster superuser, a program runs as the database's OS user: it tries to
    // move itself to the service's cgroup and the root one, and to raise its own limit.
    const attempts = [
      `echo $$ > ${join(memoryDir, "..", "..", "cgroup.procs")}`,
      `echo $$ > ${mode === "v2" ? "/sys/fs/cgroup/cgroup.procs" : "/sys/fs/cgroup/memory/cgroup.procs"}`,
      `echo 8589934592 > ${join(memoryDir, limitName)}`,
      `mkdir ${join(memoryDir, "escape")}`,
    ];
    const script = `${attempts.map((attempt) => `(${attempt}) 2>/dev/null && echo ESCAPED`).join("; ")}; cat /proc/self/cgroup`;
    const rows = await runtime.adminQuery(
      hog,
      `CREATE TEMP TABLE out (line text); COPY out FROM PROGRAM ${sqlLiteral(script)}; SELECT line FROM out`,
    );
    const lines = rows.map((row) => row["line"] ?? "");
    expect(lines).not.toContain("ESCAPED");
    const memoryLine = lines.find((line) => (mode === "v2" ? line.startsWith("0::") : /:memory:/.test(line)));
    expect(memoryLine).toMatch(new RegExp(`/sota-db/${hog.slug}$`));
    const limit = await readFile(join(memoryDir, limitName), "utf8");
    expect(limit.trim()).toBe(String(MEMORY_MB * 1024 * 1024));
  });

  it("kills only the database past its memory limit, reports it, and its neighbour keeps serving", async () => {
    let stop = false;
    let neighbourQueries = 0;
    const neighbourLoop = withApp(results.get(neighbour.slug)!, neighbour, async (client) => {
      while (!stop && neighbourQueries < 100_000) {
        const { rows } = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM generate_series(1, 1000)");
        expect(rows[0]!.n).toBe(1000);
        neighbourQueries += 1;
      }
    });
    let hogFailures = 0;
    try {
      for (let round = 0; round < 3; round += 1) {
        await withApp(results.get(hog.slug)!, hog, (client) => client.query(HOG_SQL)).then(
          () => undefined,
          () => (hogFailures += 1),
        );
        await eventually(() => withApp(results.get(hog.slug)!, hog, (client) => client.query("SELECT 1")));
      }
    } finally {
      stop = true;
      await neighbourLoop;
    }
    // The allocation never succeeded, the neighbour's one session never broke.
    expect(hogFailures).toBe(3);
    expect(neighbourQueries).toBeGreaterThan(0);
    const status = await runtime.limitsStatus(hog);
    expect(status.oomKills).toBeGreaterThanOrEqual(1);
    expect((await runtime.limitsStatus(neighbour)).oomKills).toBe(0);
    expect(runtime.outOfMemoryKills()).toEqual([{ projectId: hog.projectId, kills: status.oomKills }]);
    const metrics = new Metrics({ defaultMetrics: false });
    metrics.watchOutOfMemory(runtime);
    const scraped = await metrics.registry.metrics();
    expect(scraped).toContain(`sota_database_oom_kills_total{project_id="${hog.projectId}"} ${status.oomKills}`);
    expect(scraped).not.toContain(neighbour.projectId);
    const reported = bed.logs
      .text()
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((line) => String(line["msg"]).startsWith("database ran out of memory"));
    expect(reported.length).toBeGreaterThanOrEqual(1);
    expect(reported[0]).toMatchObject({ level: 50, slug: hog.slug, projectId: hog.projectId });
    // Restarted in place: the hog answers again through its pooler.
    await withApp(results.get(hog.slug)!, hog, (client) => client.query("SELECT 1"));
  });

  it("keeps the app role to its pool's connections: the tenant cannot take the superuser's nor lift the limit", async () => {
    const role = appRoleName(hog.slug);
    const { socketDir } = instancePaths(bed.dataDir, hog.slug);
    // The tenant tries to lift its own limit first.
    await expect(withApp(results.get(hog.slug)!, hog, (client) => client.query(`ALTER ROLE "${role}" CONNECTION LIMIT -1`))).rejects.toThrow(
      /permission denied|must have CREATEROLE/i,
    );
    const held = [];
    try {
      // Every session the role may have (PgBouncer holds some already), then
      // one more: refused, while the service's superuser still gets in.
      const [open] = await runtime.adminQuery(hog, `SELECT count(*)::text AS n FROM pg_stat_activity WHERE usename = '${role}'`);
      for (let i = Number(open!["n"]); i < APP_ROLE_CONNECTION_LIMIT; i += 1) {
        const client = appRoleSocketClient(socketDir, role, hog.slug);
        held.push(client);
        await client.connect();
      }
      const extra = appRoleSocketClient(socketDir, role, hog.slug);
      await expect(extra.connect()).rejects.toThrow(/too many connections for role/);
      await extra.end().catch(() => undefined);
      expect(await runtime.adminQuery(hog, `SELECT rolconnlimit::text AS n FROM pg_roles WHERE rolname = '${role}'`)).toEqual([
        { n: String(APP_ROLE_CONNECTION_LIMIT) },
      ]);
    } finally {
      await Promise.all(held.map((client) => client.end().catch(() => undefined)));
    }
  });

  it("removes a database's cgroup with the database", async () => {
    const own = await cgroupsOf(await postmasterPid(join(dirOf(neighbour), "pgdata")));
    const dir = mode === "v2" ? join("/sys/fs/cgroup", own.get("")!) : join("/sys/fs/cgroup/memory", own.get("memory")!);
    await runtime.remove(neighbour, { keepData: false });
    await expect(readFile(join(dir, "cgroup.procs"))).rejects.toMatchObject({ code: "ENOENT" });
  });
});

function sqlLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

