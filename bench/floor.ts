// The floor of row 1: what a new database costs on this machine with no service
// in between. A bare script copies the template cluster, starts PostgreSQL on
// the copy (with the driver's settings, so the server starts alike) and times
// until a first query answers over the unix socket. It skips what the service
// adds on purpose: fsync of the copy, role and database renames, credentials,
// PgBouncer, the API and the store.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chown, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import type { Binaries } from "../src/runtime/process/index.js";
import type { RunAs } from "../src/runtime/process/host/os-user.js";
import { renderPostgresConfig } from "../src/runtime/process/children/postgres-settings.js";
import { copyTemplate } from "../src/runtime/process/reserves/template-cluster.js";

const POLL_MS = 5;
const START_TIMEOUT_MS = 60_000;

export interface FloorSetup {
  readonly template: string;
  /** A directory on the same file system as the driver's instances, which `runAs` can pass through. */
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
  const configFile = join(dir, "postgresql.conf");
  const started = performance.now();
  // As the driver lays an instance out: its directory the service's, the data and socket directories the user's.
  await mkdir(dir, { mode: 0o710 });
  await mkdir(socketDir, { mode: 0o700 });
  await Promise.all([chown(dir, 0, runAs.gid), chown(socketDir, runAs.uid, runAs.gid)]);
  await copyTemplate(setup.template, pgdata, runAs);
  await writeFile(configFile, renderPostgresConfig({ pgdata, socketDir, hbaFile: join(pgdata, "pg_hba.conf") }), { mode: 0o640 });
  await chown(configFile, 0, runAs.gid);
  const postmaster = spawn(setup.binaries.postgres.postgres, ["-D", pgdata, "-c", `config_file=${configFile}`], { ...user, cwd: pgdata, stdio: "ignore" });
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
