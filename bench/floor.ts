// The floor of row 1: what a new database costs on this machine with no service
// in between. A bare script copies the template cluster, starts PostgreSQL on
// the copy (with the driver's settings, so the server starts alike) and times
// until a first query answers over the unix socket. It skips what the service
// adds on purpose: fsync of the copy, role and database renames, credentials,
// PgBouncer, the API and the store.
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFile, chown, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import type { Binaries } from "../src/runtime/process/index.js";
import type { RunAs } from "../src/runtime/process/os-user.js";
import { INCLUDE_LINE, renderPostgresSettings, SETTINGS_FILE } from "../src/runtime/process/postgres-settings.js";

const run = promisify(execFile);
const POLL_MS = 5;
const START_TIMEOUT_MS = 60_000;

export interface FloorSetup {
  readonly template: string;
  /** A directory the run-as user owns, on the same file system as the driver's instances. */
  readonly workDir: string;
  readonly binaries: Binaries;
  readonly runAs: RunAs;
}

/** One new cluster from the template to a first answered query, in ms; everything is removed after. */
export async function floorOnce(setup: FloorSetup): Promise<number> {
  const { runAs } = setup;
  const user = runAs.switchUser ? { uid: runAs.uid, gid: runAs.gid } : {};
  const dir = join(setup.workDir, `floor-${randomBytes(4).toString("hex")}`);
  const pgdata = join(dir, "pgdata");
  const socketDir = join(dir, "run");
  const started = performance.now();
  await mkdir(socketDir, { recursive: true, mode: 0o700 });
  await Promise.all([chown(dir, runAs.uid, runAs.gid), chown(socketDir, runAs.uid, runAs.gid)]);
  await run("cp", ["-a", setup.template, pgdata], { ...user });
  await appendFile(join(pgdata, "postgresql.conf"), `\n${INCLUDE_LINE}\n`);
  await writeFile(join(pgdata, SETTINGS_FILE), renderPostgresSettings(socketDir), { mode: 0o600 });
  await chown(join(pgdata, SETTINGS_FILE), runAs.uid, runAs.gid);
  const postmaster = spawn(setup.binaries.postgres.postgres, ["-D", pgdata], { ...user, cwd: pgdata, stdio: "ignore" });
  const exited = new Promise<void>((resolve) => postmaster.once("exit", () => resolve()));
  try {
    await firstQuery(socketDir, () => postmaster.exitCode !== null);
    return performance.now() - started;
  } finally {
    postmaster.kill("SIGINT");
    await exited;
    await rm(dir, { recursive: true, force: true });
  }
}

async function firstQuery(socketDir: string, hasExited: () => boolean): Promise<void> {
  const until = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (hasExited()) throw new Error("the floor's PostgreSQL exited while starting");
    const client = new pg.Client({ host: socketDir, user: "postgres", database: "postgres" });
    client.on("error", () => undefined);
    try {
      await client.connect();
      await client.query("SELECT 1");
      return;
    } catch (error) {
      if (Date.now() > until) throw error;
    } finally {
      await client.end().catch(() => undefined);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
