// A throwaway PostgreSQL cluster for the PostgreSQL state store's tests: initdb
// into a temp dir, listen on 127.0.0.1 (a free port) with password auth, stop
// and remove it after the file. PostgreSQL refuses to run as root, so a root
// test run starts it as the unprivileged OS user `postgres`.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { resolveUserPolicy, type RunAs } from "../../src/runtime/process/host/os-user.js";

const BIN_DIRS = ["/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"];

export interface StatePostgres {
  /** A new, empty database on the cluster; its URL carries the password. */
  createDatabase(): Promise<string>;
  stop(): Promise<void>;
}

/** The OS user `postgres` when we are root (PostgreSQL refuses root), else ourselves. */
async function stateServerUser(): Promise<RunAs> {
  const policy = await resolveUserPolicy(process.getuid?.() === 0 ? "postgres" : undefined);
  if (policy.perInstance) throw new Error("unreachable: a named user is always shared");
  return policy.shared;
}

export async function startStatePostgres(): Promise<StatePostgres> {
  const binDir = process.env.SOTA_PG_BIN_DIR ?? BIN_DIRS.find((dir) => existsSync(join(dir, "initdb")));
  if (!binDir) throw new Error(`no PostgreSQL binaries in ${BIN_DIRS.join(", ")} (set SOTA_PG_BIN_DIR)`);
  const runAs = await stateServerUser();
  const dir = await mkdtemp(join(tmpdir(), "sota-state-pg-"));
  const password = randomBytes(12).toString("hex");
  const pgdata = join(dir, "pgdata");
  const pwfile = join(dir, "pwfile");
  await writeFile(pwfile, password, { mode: 0o600 });
  if (runAs.switchUser) {
    await chown(dir, runAs.uid, runAs.gid);
    await chown(pwfile, runAs.uid, runAs.gid);
  }
  await run(runAs, join(binDir, "initdb"), ["-D", pgdata, "-U", "sota", "--auth=scram-sha-256", `--pwfile=${pwfile}`, "--no-sync", "-E", "UTF8"]);
  const port = await freePort();
  const server = start(runAs, join(binDir, "postgres"), [
    "-D", pgdata, "-h", "127.0.0.1", "-p", String(port), "-k", dir, "-c", "fsync=off", "-c", "full_page_writes=off",
  ]);
  const url = (database: string) => `postgres://sota:${password}@127.0.0.1:${port}/${database}`;
  const stop = async (): Promise<void> => {
    if (server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((resolve) => server.once("exit", resolve));
      server.kill("SIGINT");
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitUntilAccepting(url("postgres"), server);
  } catch (error) {
    await stop();
    throw error;
  }
  let databases = 0;
  return {
    async createDatabase() {
      const name = `state_${process.pid}_${++databases}`;
      const client = new pg.Client({ connectionString: url("postgres") });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    stop,
  };
}

function ids(runAs: RunAs): { uid?: number; gid?: number } {
  return runAs.switchUser ? { uid: runAs.uid, gid: runAs.gid } : {};
}

function start(runAs: RunAs, command: string, args: string[]): ChildProcess {
  return spawn(command, args, { ...ids(runAs), stdio: ["ignore", "ignore", "pipe"] });
}

async function run(runAs: RunAs, command: string, args: string[]): Promise<void> {
  const child = spawn(command, args, { ...ids(runAs), stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => child.once("error", reject).once("exit", resolve));
  if (code !== 0) throw new Error(`${command} exited with ${code}: ${stderr}`);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Keeps the server's stderr until it accepts connections (to say why it did not), then lets it drain. */
async function waitUntilAccepting(url: string, server: ChildProcess): Promise<void> {
  let stderr = "";
  const keep = (chunk: Buffer): void => void (stderr += chunk.toString());
  server.stderr!.on("data", keep);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (server.exitCode !== null) throw new Error(`postgres exited with ${server.exitCode}: ${stderr}`);
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      await client.end();
      server.stderr!.off("data", keep).resume();
      return;
    } catch (error) {
      await client.end().catch(() => undefined);
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
