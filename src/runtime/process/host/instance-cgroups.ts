// Per-instance cgroups for the process runtime: each database's postmaster
// (and every backend it forks, which inherits the cgroup) and its PgBouncer
// run in a cgroup of their own, with a memory, CPU and process limit. cgroup
// v2 where the host has it (one directory with memory.max, cpu.max,
// pids.max), v1 otherwise (a directory under each controller's hierarchy),
// both below the service's own cgroup (sota-db/<slug>),
// neither: limits are not enforced, which the log says at start and
// GetDatabase says per database.
//
// Safe against the child: every file here is created and written by the
// service (root) and stays root's, mode 0644 in a 0755 directory. The
// instance's OS user can read its limits but not raise them, cannot write its
// own pids into another cgroup's cgroup.procs (root's too), and cannot create
// or remove cgroups: moving a process needs write access to the target's
// cgroup.procs, which only root has. A tenant who becomes superuser of its
// cluster runs as that unprivileged user, so stays inside.
import { access, mkdir, readFile, readdir, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loggableError, type Logger } from "../../../log.js";
import type { LimitsMechanism, ResourceLimits } from "../../shared/resource-limits.js";

/** Every instance's cgroup is a child of this one, under each hierarchy. */
const PARENT = "sota-db";
const CPU_PERIOD_US = 100_000;
const V1_CONTROLLERS = ["memory", "cpu", "pids"] as const;
type V1Controller = (typeof V1_CONTROLLERS)[number];

export interface CgroupHostOptions {
  /** Where the cgroup file systems are mounted; /sys/fs/cgroup. */
  readonly root?: string;
  readonly logger: Logger;
}

/** How this host's cgroups are laid out, found once at start. */
export class CgroupHost {
  private constructor(
    readonly mechanism: LimitsMechanism,
    /** Controller ("v2" for the unified hierarchy) → the directory the instances' cgroups go in. */
    private readonly parents: ReadonlyMap<string, string>,
  ) {}

  /** No limits (a runtime made without detection, as in some tests). */
  static none(): CgroupHost {
    return new CgroupHost("none", new Map());
  }

  /**
   * The instances' cgroups go under the service's own cgroup (its systemd
   * unit's, its container's), never beside it: the host's limits on the
   * service keep covering its databases, and nothing is left outside the
   * service's slice.
   */
  static async detect(options: CgroupHostOptions): Promise<CgroupHost> {
    const root = options.root ?? "/sys/fs/cgroup";
    const { logger } = options;
    try {
      const own = await ownCgroups();
      const controllers = await readFile(join(root, "cgroup.controllers"), "utf8").catch(() => undefined);
      if (controllers !== undefined && controllers.split(/\s+/).includes("memory")) {
        const parent = await prepareV2Parent(root, own.get("") ?? "/");
        logger.info({ mechanism: "cgroup-v2", parent }, "database resource limits are enforced through cgroup v2");
        return new CgroupHost("cgroup-v2", new Map([["v2", parent]]));
      }
      const parents = new Map<string, string>();
      for (const controller of V1_CONTROLLERS) {
        const hierarchy = join(root, controller);
        if (!(await exists(join(hierarchy, "cgroup.procs")))) continue;
        const parent = join(hierarchy, own.get(controller) ?? "/", PARENT);
        await mkdir(parent, { recursive: true });
        parents.set(controller, parent);
      }
      if (parents.has("memory")) {
        logger.info({ mechanism: "cgroup-v1", controllers: [...parents.keys()] }, "database resource limits are enforced through cgroup v1");
        return new CgroupHost("cgroup-v1", parents);
      }
      logger.error(
        { root },
        "database resource limits are NOT enforced: this host has no writable cgroup v2 or v1 memory controller (run the service as root on a host with cgroups)",
      );
    } catch (error) {
      logger.error(
        { root, err: loggableError(error) },
        "database resource limits are NOT enforced: the service cannot set up cgroups on this host (run it as root)",
      );
    }
    return CgroupHost.none();
  }

  /** The cgroup of one instance (by its slug); nothing is created until `apply`. */
  instance(name: string): InstanceCgroup {
    return new InstanceCgroup(this.mechanism, new Map([...this.parents].map(([controller, parent]) => [controller, join(parent, name)])));
  }
}

/** One instance's cgroup: made and limited before its processes start, removed with the instance. */
export class InstanceCgroup {
  constructor(
    readonly mechanism: LimitsMechanism,
    /** Controller ("v2" for the unified one) → directory. */
    private readonly dirs: ReadonlyMap<string, string>,
  ) {}

  get enforced(): boolean {
    return this.mechanism !== "none";
  }

  /** Creates the cgroup if missing and sets (or changes, in place) its limits. */
  async apply(limits: ResourceLimits): Promise<void> {
    for (const [controller, dir] of this.dirs) {
      await mkdir(dir, { recursive: true });
      if (controller === "v2") await applyV2(dir, limits);
      else await applyV1(controller as V1Controller, dir, limits);
    }
  }

  /**
   * Moves a freshly spawned child into the cgroup; whatever it forks from
   * then on is born inside. A postmaster may have forked its first helpers
   * (startup process, checkpointer) in the moment between its spawn and this
   * write: its direct children found then are moved too.
   */
  async addProcess(pid: number): Promise<void> {
    // The parent first: a child found after that was forked before it (or
    // inherited the cgroup already), so none slips between the two.
    for (const dir of this.dirs.values()) await writeFile(join(dir, "cgroup.procs"), `${pid}\n`).catch(ignoreGone);
    const children = await childrenOf(pid);
    for (const dir of this.dirs.values()) {
      for (const child of children) await writeFile(join(dir, "cgroup.procs"), `${child}\n`).catch(ignoreGone);
    }
  }

  /** Kills by the kernel's OOM killer inside the cgroup, since it was made. */
  async oomKills(): Promise<number> {
    const dir = this.dirs.get("v2") ?? this.dirs.get("memory");
    if (dir === undefined) return 0;
    const file = this.mechanism === "cgroup-v2" ? "memory.events" : "memory.oom_control";
    const text = await readFile(join(dir, file), "utf8").catch(() => "");
    const match = /^oom_kill (\d+)$/m.exec(text);
    return match ? Number(match[1]) : 0;
  }

  /** Once the instance's processes have all exited: an empty cgroup can be removed (EBUSY while one lives). */
  async remove(): Promise<void> {
    for (const dir of this.dirs.values()) await rmdir(dir).catch(ignoreMissing);
  }
}

/**
 * The service's cgroup in each hierarchy, from /proc/self/cgroup: v1 lines
 * name their controllers ("4:memory:/path", "2:cpu,cpuacct:/path"), the v2
 * line none ("0::/path", key "").
 */
async function ownCgroups(): Promise<Map<string, string>> {
  const own = new Map<string, string>();
  for (const line of (await readFile("/proc/self/cgroup", "utf8")).split("\n")) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    for (const controller of match[1]!.split(",")) own.set(controller, match[2]!);
  }
  return own;
}

/**
 * v2 hands controllers down only to cgroups whose parent enables them, and
 * only a cgroup without processes of its own may (the root aside): where its
 * cgroup refuses, the service moves itself into a leaf "service" of it, then
 * enables memory, cpu and pids there and in sota-db. Under systemd, give the
 * unit Delegate=yes so that systemd leaves that subtree to the service.
 */
async function prepareV2Parent(root: string, ownPath: string): Promise<string> {
  const base = join(root, ownPath);
  const available = (await readFile(join(base, "cgroup.controllers"), "utf8")).split(/\s+/);
  const enable = ["memory", "cpu", "pids"]
    .filter((name) => available.includes(name))
    .map((name) => `+${name}`)
    .join(" ");
  try {
    await writeFile(join(base, "cgroup.subtree_control"), enable);
  } catch (error) {
    // EBUSY: the cgroup has processes of its own (ours; a container's
    // namespace root counts too). They move to the leaf, then it is allowed.
    if ((error as NodeJS.ErrnoException).code !== "EBUSY") throw error;
    const leaf = join(base, "service");
    await mkdir(leaf, { recursive: true });
    const members = (await readFile(join(base, "cgroup.procs"), "utf8")).split("\n").filter(Boolean);
    for (const pid of members) await writeFile(join(leaf, "cgroup.procs"), pid).catch(ignoreGone);
    await writeFile(join(base, "cgroup.subtree_control"), enable);
  }
  const parent = join(base, PARENT);
  await mkdir(parent, { recursive: true });
  await writeFile(join(parent, "cgroup.subtree_control"), enable);
  return parent;
}

async function applyV2(dir: string, limits: ResourceLimits): Promise<void> {
  await writeIfPresent(dir, "memory.max", limits.memoryMb > 0 ? String(limits.memoryMb * 1024 * 1024) : "max");
  // Swap would let a database past its memory limit at the cost of the host's disk.
  await writeIfPresent(dir, "memory.swap.max", limits.memoryMb > 0 ? "0" : "max");
  await writeIfPresent(dir, "cpu.max", `${limits.cpus > 0 ? Math.round(limits.cpus * CPU_PERIOD_US) : "max"} ${CPU_PERIOD_US}`);
  await writeIfPresent(dir, "pids.max", limits.pids > 0 ? String(limits.pids) : "max");
}

async function applyV1(controller: V1Controller, dir: string, limits: ResourceLimits): Promise<void> {
  switch (controller) {
    case "memory": {
      const value = limits.memoryMb > 0 ? String(limits.memoryMb * 1024 * 1024) : "-1";
      // memsw (memory + swap) may never be below the memory limit: lowering
      // sets memory first, raising memsw first. Without swap accounting
      // (memsw absent), memory alone.
      const hasSwap = await exists(join(dir, "memory.memsw.limit_in_bytes"));
      try {
        await writeFile(join(dir, "memory.limit_in_bytes"), value);
        if (hasSwap) await writeFile(join(dir, "memory.memsw.limit_in_bytes"), value);
      } catch (error) {
        if (!hasSwap) throw error;
        await writeFile(join(dir, "memory.memsw.limit_in_bytes"), value);
        await writeFile(join(dir, "memory.limit_in_bytes"), value);
      }
      return;
    }
    case "cpu":
      await writeFile(join(dir, "cpu.cfs_period_us"), String(CPU_PERIOD_US));
      await writeFile(join(dir, "cpu.cfs_quota_us"), limits.cpus > 0 ? String(Math.round(limits.cpus * CPU_PERIOD_US)) : "-1");
      return;
    case "pids":
      await writeFile(join(dir, "pids.max"), limits.pids > 0 ? String(limits.pids) : "max");
      return;
  }
}

async function writeIfPresent(dir: string, file: string, value: string): Promise<void> {
  if (await exists(join(dir, file))) await writeFile(join(dir, file), value);
}

/**
 * Direct children of `pid` now: the kernel's list for its main thread (a
 * postmaster has no other), else a walk over /proc.
 */
async function childrenOf(pid: number): Promise<number[]> {
  const listed = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => undefined);
  if (listed !== undefined) return listed.split(/\s+/).filter(Boolean).map(Number);
  const children: number[] = [];
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so from the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === pid) children.push(Number(entry));
  }
  return children;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** A process that exited before it could be moved needs no limit. */
function ignoreGone(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
}

function ignoreMissing(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
}
