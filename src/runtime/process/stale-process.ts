// A service run that was killed (SIGKILL, OOM, power cut of the service only)
// leaves its postmasters and pgbouncers running, unsupervised and holding the
// data directory and the port. Before starting its own, a new run stops them:
// adopting processes that are not our children would leave us unable to see them die.
import { readFile, readlink, realpath, unlink } from "node:fs/promises";
import type { Logger } from "../../log.js";
import { readIfExists } from "./owned-files.js";

const POLL_MS = 25;

type StopSteps = ReadonlyArray<readonly [NodeJS.Signals, number]>;

interface StaleProcess {
  /** For the log line: "PostgreSQL" or "PgBouncer". */
  readonly what: string;
  /** Holds the pid on its first line. */
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
  const pid = await pidFrom(stale.pidFile);
  if (pid === undefined || !isAlive(pid)) return;
  if (await stale.belongsHere(pid)) {
    logger.warn({ pid }, `stopping a ${stale.what} left running by an earlier service run`);
    await stopPid(pid, stale.steps);
    return;
  }
  // The pid now belongs to an unrelated process; PostgreSQL would take its lock
  // file for a live postmaster and refuse to start.
  await unlink(stale.pidFile).catch(() => undefined);
}

async function pidFrom(file: string): Promise<number | undefined> {
  const text = await readIfExists(file);
  const pid = Number(text?.split("\n")[0]?.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
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

async function stopPid(pid: number, steps: StopSteps): Promise<void> {
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
