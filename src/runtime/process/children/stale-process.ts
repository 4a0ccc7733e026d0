// A service run that was killed (SIGKILL, OOM, power cut of the service only)
// leaves its postmasters and pgbouncers running, unsupervised and holding the
// data directory and the port. Before starting its own, a new run stops them:
// adopting processes that are not our children would leave us unable to see them die.
//
// Everything here is the child's word: its pid file, its working directory,
// its command line. So the pid is signalled with the child's own privileges
// (`kill` run as the OS user that owns the directory holding the pid file),
// and only when the process runs as that user: the kernel itself refuses a
// signal to anything else, root's processes and other instances' included.
import { readFile, readlink, realpath, unlink, lstat } from "node:fs/promises";
import { dirname } from "node:path";
import type { Logger } from "../../../log.js";
import type { RunAs } from "../host/os-user.js";
import { readChildFile, SERVICE_USER } from "../host/owned-files.js";
import { runCommand } from "./run-command.js";

const POLL_MS = 25;

type StopSteps = ReadonlyArray<readonly [NodeJS.Signals, number]>;

interface StaleProcess {
  /** For the log line: "PostgreSQL" or "PgBouncer". */
  readonly what: string;
  /** Holds the pid on its first line; its directory's owner is the child's OS user. */
  readonly pidFile: string;
  /** Whether the live process with that pid is really the one the file speaks of. */
  readonly belongsHere: (pid: number) => Promise<boolean>;
  /** Gentle first, each followed by up to that many ms of waiting. */
  readonly steps: StopSteps;
}

export function stopStalePostmaster(pgdata: string, logger: Logger): Promise<void> {
  return stopStale(
    {
      what: "PostgreSQL",
      pidFile: `${pgdata}/postmaster.pid`,
      belongsHere: (pid) => runsIn(pid, pgdata),
      // Fast shutdown first (clean checkpoint), immediate shutdown if it hangs.
      steps: [
        ["SIGINT", 30_000],
        ["SIGQUIT", 5_000],
        ["SIGKILL", 5_000],
      ],
    },
    logger,
  );
}

export function stopStalePgbouncer(pidFile: string, configFile: string, logger: Logger): Promise<void> {
  return stopStale(
    {
      what: "PgBouncer",
      pidFile,
      belongsHere: async (pid) => {
        const commandLine = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
        return commandLine.includes("pgbouncer") && commandLine.split("\0").includes(configFile);
      },
      // SIGINT lets transactions in flight finish.
      steps: [
        ["SIGINT", 10_000],
        ["SIGTERM", 5_000],
        ["SIGKILL", 5_000],
      ],
    },
    logger,
  );
}

async function stopStale(stale: StaleProcess, logger: Logger): Promise<void> {
  const owner = await childOwning(dirname(stale.pidFile));
  if (owner === undefined) return;
  const pid = await pidFrom(stale.pidFile, owner);
  if (pid === undefined || !isAlive(pid)) return;
  if ((await realUid(pid)) === owner.uid && pid !== process.pid && (await stale.belongsHere(pid))) {
    logger.warn({ pid }, `stopping a ${stale.what} left running by an earlier service run`);
    await stopPid(pid, owner, stale.steps);
    return;
  }
  // The pid now belongs to an unrelated process; PostgreSQL would take its lock
  // file for a live postmaster and refuse to start. (unlink removes the name,
  // never what a link points to.)
  await unlink(stale.pidFile).catch(() => undefined);
}

/**
 * The OS user a child ran as: the owner of the directory holding its pid
 * file (its data directory, its PgBouncer directory), whose parent is the
 * service's. Undefined when that is not a real directory, or is root's while
 * the service is root (a child never runs as root).
 */
async function childOwning(dir: string): Promise<RunAs | undefined> {
  const stats = await lstat(dir).catch(() => undefined);
  if (!stats?.isDirectory()) return undefined;
  const switchUser = SERVICE_USER.uid === 0;
  if (switchUser && stats.uid === 0) return undefined;
  return { name: String(stats.uid), uid: stats.uid, gid: stats.gid, switchUser };
}

async function pidFrom(file: string, owner: RunAs): Promise<number | undefined> {
  const text = await readChildFile(file, owner);
  const pid = Number(text?.split("\n")[0]?.trim());
  return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
}

async function realUid(pid: number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const uid = Number(status.split("\n").find((line) => line.startsWith("Uid:"))?.split(/\s+/)[1]);
  return Number.isInteger(uid) ? uid : undefined;
}

/** A postmaster's working directory is its data directory (whatever it has been renamed to since). */
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

async function stopPid(pid: number, owner: RunAs, steps: StopSteps): Promise<void> {
  for (const [signal, waitMs] of steps) {
    if (!(await signalAs(owner, pid, signal))) return;
    const until = Date.now() + waitMs;
    while (Date.now() < until) {
      if (!isAlive(pid)) return;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}

/** Sends `signal` with `owner`'s privileges; false when the kernel refused it or the process is gone. */
async function signalAs(owner: RunAs, pid: number, signal: NodeJS.Signals): Promise<boolean> {
  if (!owner.switchUser) {
    try {
      process.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }
  return runCommand("kill", ["-s", signal.replace(/^SIG/, ""), "--", String(pid)], { runAs: owner, timeoutMs: 10_000 }).then(
    () => true,
    () => false,
  );
}
