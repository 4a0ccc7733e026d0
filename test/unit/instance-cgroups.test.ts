// The cgroup layouts the process runtime knows, on a fake cgroup root (plain
// files where the kernel would have its own): v2 (one hierarchy, controllers
// handed down through cgroup.subtree_control), v1 (one hierarchy per
// controller) and none (a clear error line, limits reported as not enforced).
// The real kernel's behaviour (v1 on this CI host) is tested in
// test/security/resource-limits.test.ts.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CgroupHost } from "../../src/runtime/process/host/instance-cgroups.js";
import { captureLogs } from "../support/process-runtime-harness.js";

const roots: string[] = [];
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => rm(root, { recursive: true, force: true })));
});

async function fakeRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "sota-cgroup-"));
  roots.push(root);
  return root;
}

/** This process's own cgroup in each hierarchy, as the code under test reads it. */
async function ownPath(controller: string): Promise<string> {
  for (const line of (await readFile("/proc/self/cgroup", "utf8")).split("\n")) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (controllers !== undefined && controllers.split(",").includes(controller)) return path!;
  }
  return "/";
}

const read = (path: string) => readFile(path, "utf8");

describe("instance cgroups", () => {
  it("v2: enables memory, cpu and pids below the service's cgroup and writes memory.max, cpu.max, pids.max", async () => {
    const root = await fakeRoot();
    await writeFile(join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n");
    const base = join(root, await ownPath(""));
    await mkdir(base, { recursive: true });
    await writeFile(join(base, "cgroup.controllers"), "cpuset cpu io memory pids\n");
    await writeFile(join(base, "cgroup.subtree_control"), "");
    await writeFile(join(base, "cgroup.procs"), "");
    const logs = captureLogs();
    const host = await CgroupHost.detect({ root, logger: logs.logger });
    expect(host.mechanism).toBe("cgroup-v2");
    expect(await read(join(base, "cgroup.subtree_control"))).toBe("+memory +cpu +pids");
    expect(await read(join(base, "sota-db", "cgroup.subtree_control"))).toBe("+memory +cpu +pids");
    // The kernel makes these files in a new cgroup; here the test does.
    const dir = join(base, "sota-db", "my-app");
    await mkdir(dir, { recursive: true });
    for (const file of ["memory.max", "memory.swap.max", "cpu.max", "pids.max", "cgroup.procs"]) await writeFile(join(dir, file), "");
    await writeFile(join(dir, "memory.events"), "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n");
    const cgroup = host.instance("my-app");
    await cgroup.apply({ memoryMb: 128, cpus: 0.5, pids: 100, shmMb: 64 });
    expect(await read(join(dir, "memory.max"))).toBe(String(128 * 1024 * 1024));
    expect(await read(join(dir, "memory.swap.max"))).toBe("0");
    expect(await read(join(dir, "cpu.max"))).toBe("50000 100000");
    expect(await read(join(dir, "pids.max"))).toBe("100");
    await cgroup.apply({ memoryMb: 0, cpus: 0, pids: 0, shmMb: 0 });
    expect(await read(join(dir, "memory.max"))).toBe("max");
    expect(await read(join(dir, "cpu.max"))).toBe("max 100000");
    expect(await read(join(dir, "pids.max"))).toBe("max");
    await cgroup.addProcess(process.pid);
    expect((await read(join(dir, "cgroup.procs"))).trim()).not.toBe("");
    expect(await cgroup.oomKills()).toBe(2);
    expect(logs.text()).toContain("enforced through cgroup v2");
  });

  it("v1: one cgroup per controller below the service's, with memory (and memsw), CFS quota and pids.max", async () => {
    const root = await fakeRoot();
    for (const controller of ["memory", "cpu", "pids"]) {
      await mkdir(join(root, controller), { recursive: true });
      await writeFile(join(root, controller, "cgroup.procs"), "");
    }
    const logs = captureLogs();
    const host = await CgroupHost.detect({ root, logger: logs.logger });
    expect(host.mechanism).toBe("cgroup-v1");
    const dirs = Object.fromEntries(
      await Promise.all(["memory", "cpu", "pids"].map(async (c) => [c, join(root, c, await ownPath(c), "sota-db", "my-app")] as const)),
    );
    await mkdir(dirs["memory"]!, { recursive: true });
    await writeFile(join(dirs["memory"]!, "memory.memsw.limit_in_bytes"), "");
    await writeFile(join(dirs["memory"]!, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n");
    const cgroup = host.instance("my-app");
    await cgroup.apply({ memoryMb: 96, cpus: 2, pids: 300, shmMb: 0 });
    expect(await read(join(dirs["memory"]!, "memory.limit_in_bytes"))).toBe(String(96 * 1024 * 1024));
    expect(await read(join(dirs["memory"]!, "memory.memsw.limit_in_bytes"))).toBe(String(96 * 1024 * 1024));
    expect(await read(join(dirs["cpu"]!, "cpu.cfs_quota_us"))).toBe("200000");
    expect(await read(join(dirs["cpu"]!, "cpu.cfs_period_us"))).toBe("100000");
    expect(await read(join(dirs["pids"]!, "pids.max"))).toBe("300");
    expect(await cgroup.oomKills()).toBe(5);
    expect(logs.text()).toContain("enforced through cgroup v1");
  });

  it("neither: says in one error line that limits are not enforced, and enforces nothing", async () => {
    const root = await fakeRoot();
    const logs = captureLogs();
    const host = await CgroupHost.detect({ root, logger: logs.logger });
    expect(host.mechanism).toBe("none");
    const cgroup = host.instance("my-app");
    expect(cgroup.enforced).toBe(false);
    const lines = logs.text().split("\n").filter((line) => line.includes("NOT enforced"));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 50 });
  });
});
