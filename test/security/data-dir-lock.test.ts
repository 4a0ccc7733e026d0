// Item 10 of the tenant-isolation issue: two services on one data dir would
// each stop and restart the other's children. The service as an operator runs
// it (`npm start`'s command): a second one on the same data dir exits
// non-zero with one line and touches nothing, the first one's database keeps
// answering with the same processes; after a kill -9 of the first (the kernel
// drops its lock), a new one starts and serves the database again.
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";
import { REPO_ROOT, serviceCommand } from "../support/service-command.js";
import { instancePaths } from "../../src/runtime/process/instance/instance-paths.js";

const { command: NODE, args: START_ARGS } = serviceCommand();
const dataDir = mkdtempSync(join(tmpdir(), "sota-lock-"));
chmodSync(dataDir, 0o711);
const env = { SOTA_DATA_DIR: dataDir, SOTA_LISTEN: "127.0.0.1:0", SOTA_POOLER_PORTS: poolerPortsSetting(35), SOTA_SPARE_COPIES: "0" };
const started: Running[] = [];

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function run(): Running {
  const child = spawn(NODE, START_ARGS, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk) => (stdout += chunk));
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code, signal) => resolve(code ?? (signal ? -1 : null))));
  const running = { child, stdout: () => stdout, stderr: () => stderr, exited };
  started.push(running);
  return running;
}

async function listening(running: Running, timeoutMs = 90_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = /"address":"127\.0\.0\.1:(\d+)"/.exec(running.stdout());
    if (match) return Number(match[1]);
    if (running.child.exitCode !== null) throw new Error(`exited early: ${running.stdout()}${running.stderr()}`);
    if (Date.now() > deadline) throw new Error(`not listening: ${running.stdout()}${running.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The exit code, or "still running" once timeoutMs has passed (then it is stopped). */
async function exitWithin(running: Running, timeoutMs: number): Promise<number | null | "still running"> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([running.exited, new Promise<"still running">((resolve) => (timer = setTimeout(() => resolve("still running"), timeoutMs)))]);
  clearTimeout(timer);
  if (result === "still running") {
    running.child.kill("SIGTERM");
    await running.exited;
  }
  return result;
}

async function answers(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query("SELECT count(*)::int AS n FROM kept")).rows[0].n;
  } finally {
    await client.end();
  }
}

function pids(slug: string): { postgres: number; pgbouncer: number } {
  const paths = instancePaths(dataDir, slug);
  return {
    postgres: Number(readFileSync(join(paths.pgdata, "postmaster.pid"), "utf8").split("\n")[0]),
    pgbouncer: Number(readFileSync(paths.pgbouncerPid, "utf8").trim()),
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

afterAll(async () => {
  for (const running of started) {
    if (running.child.exitCode === null && running.child.signalCode === null) {
      running.child.kill("SIGTERM");
      await exitWithin(running, 30_000);
    }
  }
  rmSync(dataDir, { recursive: true, force: true });
});

describe("one service per data dir", () => {
  const projectId = randomUUID();
  let slug = "";
  let url = "";

  it("refuses a second service on the same data dir with one line, and leaves the first untouched", async () => {
    const first = run();
    const port = await listening(first);
    const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
    const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const ensured = await fetch(`http://127.0.0.1:${port}/v1/projects/${projectId}/database`, { method: "POST", headers });
    expect(ensured.status).toBe(200);
    slug = ((await ensured.json()) as { database: { slug: string } }).database.slug;
    const connection = await fetch(`http://127.0.0.1:${port}/sota.database.v1.DatabaseService/GetConnection`, {
      method: "POST",
      headers,
      body: JSON.stringify({ projectId }),
    });
    url = ((await connection.json()) as { databaseUrl: string }).databaseUrl;
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query("CREATE TABLE kept (v int); INSERT INTO kept VALUES (1), (2)");
    await client.end();
    const before = pids(slug);

    const second = run();
    const code = await exitWithin(second, 60_000);
    expect(code).not.toBe("still running");
    expect(code).not.toBe(0);
    const lines = `${second.stdout()}${second.stderr()}`.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^sota-db: .*data dir .* is in use by another sota-db/);
    expect(lines[0]).toContain(dataDir);

    // The first one's database still answers, through the same processes.
    expect(await answers(url)).toBe(2);
    expect(pids(slug)).toEqual(before);
    expect(alive(before.postgres) && alive(before.pgbouncer)).toBe(true);
    const described = await fetch(`http://127.0.0.1:${port}/v1/projects/${projectId}/database`, { headers });
    expect(described.status).toBe(200);
  });

  it("lets a new service start after the first was killed with SIGKILL", async () => {
    const first = started[0]!;
    first.child.kill("SIGKILL");
    await first.exited;
    const next = run();
    const port = await listening(next);
    expect(await answers(url)).toBe(2);
    const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
    const described = await fetch(`http://127.0.0.1:${port}/v1/projects/${projectId}/database`, { headers: { authorization: `Bearer ${token}` } });
    expect(described.status).toBe(200);
    next.child.kill("SIGTERM");
    expect(await exitWithin(next, 60_000)).toBe(0);
  });
});
