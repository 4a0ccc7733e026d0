// A service run that was killed (SIGKILL, OOM, power cut of the service only)
// leaves its postmaster and pgbouncer running, unsupervised and holding the data
// directory and the port. Before starting its own, a new run stops them: adopting
// processes that are not our children would leave us unable to see them die.
import { readFile, readlink, realpath, unlink } from "node:fs/promises";
import type { Logger } from "../../log.js";
import { readIfExists } from "./owned-files.js";

const POLL_MS = 25;

export async function stopStalePostmaster(pgdata: string, logger: Logger): Promise<void> {
  const lockFile = `${pgdata}/postmaster.pid`;
  const pid = await pidFrom(lockFile);
  if (pid === undefined || !isAlive(pid)) return;
  if (await runsIn(pid, pgdata)) {
    logger.warn({ pid }, "stopping a PostgreSQL left running by an earlier service run");
    // Fast shutdown first (clean checkpoint), immediate shutdown if it hangs.
    await stopPid(pid, [
      ["SIGINT", 30_000],
      ["SIGQUIT", 5_000],
      ["SIGKILL", 5_000],
    ]);
    return;
  }
  // The pid now belongs to an unrelated process; PostgreSQL would take the
  // lock file for a live postmaster and refuse to start.
  await unlink(lockFile).catch(() => undefined);
}

export async function stopStalePgbouncer(pidFile: string, configFile: string, logger: Logger): Promise<void> {
  const pid = await pidFrom(pidFile);
  if (pid === undefined || !isAlive(pid)) return;
  const commandLine = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  if (commandLine.includes("pgbouncer") && commandLine.split("\0").includes(configFile)) {
    logger.warn({ pid }, "stopping a PgBouncer left running by an earlier service run");
    await stopPid(pid, [
      ["SIGINT", 10_000],
      ["SIGTERM", 5_000],
      ["SIGKILL", 5_000],
    ]);
    return;
  }
  await unlink(pidFile).catch(() => undefined);
}

async function pidFrom(file: string): Promise<number | undefined> {
  const text = await readIfExists(file);
  const pid = Number(text?.split("\n")[0]?.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/** A postmaster's working directory is its data directory. */
async function runsIn(pid: number, pgdata: string): Promise<boolean> {
  try {
    const [cwd, dir] = await Promise.all([readlink(`/proc/${pid}/cwd`), realpath(pgdata)]);
    return cwd === dir;
  } catch {
    return false;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function stopPid(pid: number, steps: ReadonlyArray<readonly [NodeJS.Signals, number]>): Promise<void> {
  for (const [signal, waitMs] of steps) {
    try {
      process.kill(pid, signal);
    } catch {
      return;
    }
    const until = Date.now() + waitMs;
    while (Date.now() < until) {
      if (!isAlive(pid)) return;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}
