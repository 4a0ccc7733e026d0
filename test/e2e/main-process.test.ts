// The service as an operator runs it: `npm start`'s command (see
// service-command.ts) with only environment variables, zero configuration
// otherwise, stopped by SIGTERM.
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { removeDataDir } from "../support/data-dir-cleanup.js";
import { REPO_ROOT, serviceCommand } from "../support/service-command.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";

const { command: NODE, args: START_ARGS } = serviceCommand();
const dirs: string[] = [];

afterAll(async () => {
  for (const dir of dirs) await removeDataDir(dir);
});

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "sota-main-"));
  chmodSync(dir, 0o755);
  dirs.push(dir);
  return dir;
}

interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function run(env: Record<string, string>): Running {
  const child = spawn(NODE, START_ARGS, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, output: () => output, exited };
}

async function waitFor(running: Running, pattern: RegExp, timeoutMs = 90_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = running.output().match(pattern);
    if (match) return match;
    if (running.child.exitCode !== null) throw new Error(`exited early: ${running.output()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}: ${running.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("npm start", () => {
  it("refuses a bad configuration with one line naming the variable", async () => {
    const running = run({ SOTA_DATA_DIR: dataDir(), SOTA_LISTEN: "nowhere" });
    expect(await running.exited).toBe(2);
    expect(running.output().trim()).toBe("sota-db: invalid configuration: SOTA_LISTEN: must be host:port, e.g. 127.0.0.1:8080 or [::1]:8080 (port 0 picks a free one)");
  });

  it("refuses to start without PostgreSQL binaries, saying what to install", async () => {
    const running = run({ SOTA_DATA_DIR: dataDir(), SOTA_LISTEN: "127.0.0.1:0", SOTA_PG_BIN_DIR: "/nonexistent/bin" });
    expect(await running.exited).toBe(1);
    const line = running.output().split("\n").find((text) => text.startsWith("sota-db: could not start:"));
    expect(line).toMatch(/SOTA_PG_BIN_DIR|postgresql/);
  });

  it("refuses a state.db written by a newer release with one line, and leaves it as it was", async () => {
    const dir = dataDir();
    const state = new Database(join(dir, "state.db"));
    state.pragma("user_version = 99");
    state.close();
    const running = run({ SOTA_DATA_DIR: dir, SOTA_LISTEN: "127.0.0.1:0" });
    expect(await running.exited).toBe(1);
    // One line says why (the other output is the new master key's notice); no fatal log with a stack.
    const lines = running.output().trim().split("\n");
    expect(lines.at(-1)).toMatch(/^sota-db: could not start: the SQLite state \(state\.db\) is at schema version 99, newer than this sota-db knows \(\d+\): /);
    expect(running.output()).not.toContain('"level":60');
    const after = new Database(join(dir, "state.db"), { readonly: true });
    expect(after.pragma("user_version", { simple: true })).toBe(99);
    after.close();
  });

  it("never repeats SOTA_STATE_URL (it holds a password), whether it is malformed or unreachable", async () => {
    const malformed = run({ SOTA_DATA_DIR: dataDir(), SOTA_LISTEN: "127.0.0.1:0", SOTA_STATE_URL: "mysql://sota:hunter2@db/sota" });
    expect(await malformed.exited).toBe(2);
    expect(malformed.output().trim()).toMatch(/^sota-db: invalid configuration: SOTA_STATE_URL: must be a PostgreSQL URL/);
    expect(malformed.output()).not.toContain("hunter2");

    const unreachable = run({ SOTA_DATA_DIR: dataDir(), SOTA_LISTEN: "127.0.0.1:0", SOTA_STATE_URL: "postgres://sota:hunter2@127.0.0.1:1/sota" });
    expect(await unreachable.exited).toBe(1);
    expect(unreachable.output()).toContain("sota-db: could not start: cannot connect to the PostgreSQL state store (SOTA_STATE_URL)");
    expect(unreachable.output()).not.toContain("hunter2");
  });

  it("starts with zero configuration, serves the README's curl, and stops cleanly on SIGTERM", async () => {
    const dir = dataDir();
    const env = { SOTA_DATA_DIR: dir, SOTA_LISTEN: "127.0.0.1:0", SOTA_POOLER_PORTS: poolerPortsSetting(46) };
    const running = run(env);
    const [, port] = await waitFor(running, /"address":"127\.0\.0\.1:(\d+)"/);
    const tokenFile = join(dir, "admin.token");
    expect(running.output()).toContain(tokenFile);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "master.key")).mode & 0o777).toBe(0o600);
    const token = readFileSync(tokenFile, "utf8").trim();
    expect(running.output()).not.toContain(token);

    const projectId = randomUUID();
    const response = await fetch(`http://127.0.0.1:${port}/v1/projects/${projectId}/database`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(200);
    const { database } = (await response.json()) as any;
    expect(database.state).toBe("DATABASE_STATE_READY");

    const connection = await fetch(`http://127.0.0.1:${port}/sota.database.v1.DatabaseService/GetConnection`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ projectId }),
    });
    const { databaseUrl } = (await connection.json()) as { databaseUrl: string };
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    await client.end();
    expect(running.output()).not.toContain(new URL(databaseUrl).password);

    const pidFile = join(dir, "instances", database.slug, "pgdata", "postmaster.pid");
    expect(existsSync(pidFile)).toBe(true);
    const postmasterPid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
    expect(() => process.kill(postmasterPid, 0)).not.toThrow();
    running.child.kill("SIGTERM");
    expect(await running.exited).toBe(0);
    expect(running.output()).toContain("sota-db stopped");
    expect(() => process.kill(postmasterPid, 0)).toThrow();
    // Nothing listens on the pooler port any more.
    await expect(new pg.Client({ connectionString: databaseUrl }).connect()).rejects.toThrow();
  });
});
