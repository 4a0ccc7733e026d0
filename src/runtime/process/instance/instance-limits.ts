// An instance's resource limits on the host: its cgroup made and limited
// before its processes start (and changed in place for running ones), and its
// out-of-memory kills noticed and reported.
import { loggableError } from "../../../log.js";
import { effectiveLimits, type LimitsStatus, type ResourceLimits } from "../../shared/resource-limits.js";
import type { Instance } from "./project-instance.js";

/**
 * Sets the limits `override` asks for (the defaults where it says nothing) on
 * the instance's cgroup, and moves its running processes in: a warm
 * postmaster (and its backends) started before it was this project's, or one
 * started by an earlier service run. `isNew`: the instance was just made, so
 * the cgroup's earlier OOM kills are not its own.
 */
export async function applyInstanceLimits(
  instance: Instance,
  defaults: ResourceLimits,
  override: Partial<ResourceLimits> | undefined,
  isNew: boolean,
): Promise<void> {
  const wanted = effectiveLimits(defaults, override);
  const { cgroup } = instance;
  if (!cgroup.enforced) {
    instance.limits = wanted;
    return;
  }
  try {
    await cgroup.apply(wanted);
  } catch (error) {
    // A running database keeps the limits it has when the kernel refuses a
    // change (v1 refuses a memory limit below what the cgroup holds and
    // cannot reclaim): it keeps serving, and the next ensure tries again. A
    // database that is not running yet does not start without its limits.
    if (isNew || !instance.postgres.running) throw error;
    instance.logger.warn(
      { projectId: instance.projectId, limits: wanted, kept: instance.limits, err: loggableError(error) },
      "could not change the database's limits in place; keeping the ones it has",
    );
    return;
  }
  instance.limits = wanted;
  if (isNew) {
    instance.oomKillsBase = await cgroup.oomKills();
    instance.oomKillsSeen = instance.oomKillsBase;
  }
  for (const server of [instance.postgres, instance.pgbouncer]) {
    const pid = server.process.pid;
    if (pid !== undefined) await cgroup.addProcess(pid);
  }
}

export async function instanceLimitsStatus(instance: Instance): Promise<LimitsStatus> {
  const { cgroup } = instance;
  const kills = cgroup.enforced ? (await cgroup.oomKills()) - instance.oomKillsBase : 0;
  return { mechanism: cgroup.mechanism, limits: instance.limits, oomKills: Math.max(0, kills) };
}

/**
 * Reports new out-of-memory kills once, at error level. PostgreSQL's
 * postmaster survives a backend killed this way: it ends the other sessions,
 * recovers and accepts connections again, so the database is restarted in
 * place; only its own cgroup ever was short of memory.
 */
export async function reportOutOfMemory(instance: Instance): Promise<void> {
  if (!instance.cgroup.enforced) return;
  try {
    const total = await instance.cgroup.oomKills();
    if (total <= instance.oomKillsSeen) return;
    instance.logger.error(
      {
        projectId: instance.projectId,
        newKills: total - instance.oomKillsSeen,
        oomKills: total - instance.oomKillsBase,
        memoryMb: instance.limits.memoryMb,
      },
      "database ran out of memory: the kernel killed one of its processes and PostgreSQL restarted its sessions",
    );
    instance.oomKillsSeen = total;
  } catch (error) {
    instance.logger.warn({ err: loggableError(error) }, "could not read the database's out-of-memory count");
  }
}
